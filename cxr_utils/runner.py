"""Batch runner: execute a notebook once per params file with papermill, resumably.

``python -m cxr_utils run NOTEBOOK PARAMS.yaml [...] [--profile NAME] [--out DIR] [--force]``

Each run goes to ``<out>/<notebook-stem>/<params-stem>/``. Every params file is checked
against the notebook's ``parameters`` cell before anything runs. A run whose folder already
holds a complete result is skipped unless ``--force``; an earlier folder is never overwritten
but moved aside to ``<folder>.previous``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import config, results

EXECUTED_NOTEBOOK = "notebook.ipynb"


@dataclass
class Outcome:
    """What happened to one params file."""

    run: str
    folder: Path
    status: str  # complete | done before | not run | failed
    seconds: float = 0.0
    detail: str = ""


def plan_runs(notebook: str, params_files: Sequence[str | Path]) -> list[tuple[str, dict[str, Any]]]:
    """Load and validate every params file before any run starts."""
    spec = config.notebook_parameters(notebook)
    missing = [p for p in config.RUNNER_PARAMETERS if p not in spec]
    if missing:
        raise config.ConfigError(f"{notebook} lacks the runner parameters {missing}")
    planned, names = [], set()
    for path in params_files:
        params = config.load_params_file(path)
        reserved = [k for k in config.RUNNER_PARAMETERS if k in params]
        if reserved:
            raise config.ConfigError(
                f"{path}: {reserved} are set by the runner (--profile, --out and the file name)"
            )
        config.validate_parameters(params, spec, where=str(path))
        name = Path(path).stem
        if name in names:
            raise config.ConfigError(f"two params files are named {name}; run names must be unique")
        names.add(name)
        planned.append((name, params))
    return planned


def _mark_failed(folder: Path, notebook: str, run: str, detail: str) -> None:
    result = results.read_result(folder) or {
        "run": run, "notebook": Path(notebook).stem, "warnings": [], "provenance": {}
    }
    result["status"] = "failed"
    result["error"] = detail
    result.setdefault("provenance", {})["finished"] = results.now()
    folder.mkdir(parents=True, exist_ok=True)
    results.write_json(folder / results.RESULT_FILE, result)


def _describe(err: BaseException) -> str:
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename:
        cell = getattr(err, "exec_count", None)
        return f"{ename}: {evalue}" + (f" (cell {cell})" if cell else "")
    return f"{type(err).__name__}: {err}"


def execute_one(
    notebook: Path, name: str, params: dict[str, Any], folder: Path, profile: str, kernel: str | None
) -> Outcome:
    """Run papermill for one params file into ``folder`` and classify the outcome."""
    import papermill

    started = time.monotonic()
    parameters = {**params, "run_name": name, "output_dir": str(folder), "profile": profile}
    folder.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(notebook), str(folder / EXECUTED_NOTEBOOK), parameters=parameters,
            cwd=str(notebook.parent), kernel_name=kernel, progress_bar=False,
        )
    except KeyboardInterrupt:
        _mark_failed(folder, notebook.name, name, "interrupted")
        raise
    except Exception as err:  # papermill raises many kinds; each is recorded, the batch goes on
        error = _describe(err)
    else:
        error = "the notebook ended without marking its run complete"
    seconds = time.monotonic() - started
    status = str((results.read_result(folder) or {}).get("status", ""))
    if status == "complete":
        return Outcome(name, folder, "complete", seconds)
    if status.startswith("skipped"):  # the notebook stopped itself with a reason
        return Outcome(name, folder, "not run", seconds, status.split(": ", 1)[-1])
    _mark_failed(folder, notebook.name, name, error)
    return Outcome(name, folder, "failed", seconds, error)


def run_batch(
    notebook: str | Path,
    params_files: Sequence[str | Path],
    *,
    profile: str = "default",
    out: str | Path | None = None,
    force: bool = False,
    kernel: str | None = None,
) -> list[Outcome]:
    """Execute ``notebook`` once per params file; returns one outcome per file."""
    nb_path = config.notebook_path(notebook)
    config.load_profile(profile)  # fail early on an unknown profile
    planned = plan_runs(str(nb_path), params_files)
    base = Path(out).resolve() if out else config.output_root()
    outcomes = []
    for index, (name, params) in enumerate(planned, start=1):
        folder = base / nb_path.stem / name
        prefix = f"[{index}/{len(planned)}] {nb_path.stem}/{name}"
        if results.is_complete(folder) and not force:
            print(f"{prefix}: skipped (complete result in {folder}; --force to redo)", flush=True)
            outcomes.append(Outcome(name, folder, "done before", detail="already complete"))
            continue
        results.set_aside(folder)
        print(f"{prefix}: running (profile {profile})", flush=True)
        outcome = execute_one(nb_path, name, params, folder, profile, kernel)
        detail = f": {outcome.detail}" if outcome.detail else ""
        print(f"{prefix}: {outcome.status} in {outcome.seconds:.1f} s{detail}", flush=True)
        outcomes.append(outcome)
    counts = {s: [o.run for o in outcomes if o.status == s] for s in ("complete", "done before", "not run", "failed")}
    print(", ".join(f"{len(runs)} {status}" for status, runs in counts.items())
          + "".join(f"; {status}: {', '.join(runs)}" for status, runs in counts.items()
                    if runs and status in ("not run", "failed")), flush=True)
    return outcomes


@dataclass(frozen=True)
class Stage:
    """One step of the main job: a notebook and the params files it runs.

    ``always`` stages read every run before them, so they are redone on each main job.
    """

    name: str
    notebook: str
    params_glob: str
    always: bool = False


# The main job (`make report`), in order. Later notebooks add their stages here.
STAGES = (
    Stage("data merge", "notebooks/01_data_merge.ipynb", "params/data/default.yaml"),
    Stage("custom CNN grid", "notebooks/02_custom_cnn.ipynb", "params/custom/run*.yaml"),
    Stage("transfer learning", "notebooks/03_transfer_learning.ipynb", "params/transfer/*.yaml"),
    Stage("comparison", "notebooks/04_comparison.ipynb", "params/report/comparison.yaml", always=True),
    Stage("report", "notebooks/05_report.ipynb", "params/report/report.yaml", always=True),
)
REPORT_DIR = config.PROJECT_ROOT / "report"


def run_pipeline(stages: Sequence[Stage] = STAGES, *, profile: str = "default", out: str | Path | None = None,
                 force: bool = False, export_to: str | Path | None = REPORT_DIR) -> bool:
    """Run every stage in order, export the report, print each stage's wall time.

    Returns False if any run failed (the report is then not exported).
    """
    timings, ok = [], True
    for stage in stages:
        files = sorted(config.PROJECT_ROOT.glob(stage.params_glob))
        if not files:
            raise config.ConfigError(f"stage '{stage.name}': no params files match {stage.params_glob}")
        print(f"== stage: {stage.name} ({len(files)} runs)", flush=True)
        started = time.monotonic()
        outcomes = run_batch(stage.notebook, files, profile=profile, out=out, force=force or stage.always)
        timings.append((stage.name, time.monotonic() - started))
        if any(o.status == "failed" for o in outcomes):
            ok = False
            print(f"stage '{stage.name}' had failed runs; later stages may lack inputs", flush=True)
    if ok and export_to is not None:
        from .report import export_run

        started = time.monotonic()
        print(f"report written to {export_run(Path(stages[-1].params_glob).stem, export_to, out)}", flush=True)
        timings.append(("export", time.monotonic() - started))
    print(f"\nstage wall times (profile {profile}):")
    for name, seconds in timings:
        print(f"  {name:<20} {seconds / 60:6.2f} min")
    print(f"  {'total':<20} {sum(s for _, s in timings) / 60:6.2f} min")
    return ok
