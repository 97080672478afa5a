"""Runs: the result.json contract and the papermill batch runner."""
