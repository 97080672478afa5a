"""Runs (orchestration): the papermill batch runner, the main job, the Dask executor, the final fits."""
