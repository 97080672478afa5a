"""Benchmark: the custom CNN grid one run after another vs on local Dask workers.

    .venv/bin/python benchmarks/distributed_grid.py [--profile default] [--workers 2] [--data-out outputs]

Runs ``notebooks/02_custom_cnn.ipynb`` over ``params/custom/run*.yaml`` (the main job's custom
CNN stage) twice, each time into a fresh temporary output root holding a link to the data merge
of ``--data-out`` (``01_data_merge/``; default: the project's output root) and an empty image
cache: first sequentially, then with ``--executor dask --workers 2`` (each worker one run at a
time, its kernel's thread pools given cpu_count // workers threads: one each on 2 cores).
Prints both wall times and their ratio.

What to expect on 2 cores: the per-run overhead (kernel start, imports, loading and decoding the
split, writing the model and figures) is mostly single-threaded, so two runs' overheads overlap
and that part parallelises. The convolutions do not: a sequential run already keeps both cores
busy, and two runs at once get one core each. The ratio therefore stays well below 2 and grows
with the overhead's share of a run (small profiles gain most). Speeding up the training itself
takes more cores or machines, not more workers on the same two cores.

Not a test: it takes the grid's time twice (many minutes). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cxr_utils import config, registry
from cxr_utils.runs import distributed, runner


def timed_grid(files: list[Path], profile: str, data_out: Path, executor: distributed.DaskExecutor | None) -> float:
    """Wall seconds of the grid into a fresh output root that links the data merge of ``data_out``
    (the executor's start and stop included); raises if a run fails."""
    with tempfile.TemporaryDirectory(prefix="cxr-grid-") as tmp:
        (Path(tmp) / registry.DATA_MERGE.stem).symlink_to(data_out / registry.DATA_MERGE.stem)
        started = time.perf_counter()
        with executor or contextlib.nullcontext():
            outcomes = runner.run_batch(registry.CUSTOM_CNN.path, files, profile=profile, out=tmp, executor=executor)
        seconds = time.perf_counter() - started
    failed = [o.run for o in outcomes if o.status != "complete"]
    if failed:
        raise SystemExit(f"runs not complete ({', '.join(failed)}): the timing would not compare like with like")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default", help="profile of the runs (default: default)")
    parser.add_argument("--workers", type=int, default=2, help="local Dask workers of the parallel pass")
    parser.add_argument(
        "--data-out", type=Path, default=None, help="output root holding the data merge (default: the project's)"
    )
    args = parser.parse_args()

    data_out = (args.data_out or config.output_root()).resolve()
    files = sorted(config.PROJECT_ROOT.glob("params/custom/run*.yaml"))
    for data_run in sorted({config.load_params_file(f).get("data_run", "default") for f in files}):
        manifest = registry.manifest_file(data_run, data_out)
        if not manifest.is_file():
            raise SystemExit(f"{manifest} not found: run the data merge first or pass --data-out")

    sequential = timed_grid(files, args.profile, data_out, None)
    parallel = timed_grid(files, args.profile, data_out, distributed.DaskExecutor(workers=args.workers))
    print(f"\n{len(files)} runs of {registry.CUSTOM_CNN.stem}, profile {args.profile}, cpu_count={os.cpu_count()}")
    print(f"sequential:               {sequential:8.1f} s")
    print(f"dask, {args.workers} local workers:   {parallel:8.1f} s")
    print(f"ratio: {sequential / parallel:.2f}x")


if __name__ == "__main__":  # the local workers' processes import this file again
    main()
