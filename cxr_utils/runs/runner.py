"""Batch runner: execute a notebook once per params file with papermill, resumably.

``python -m cxr_utils run NOTEBOOK PARAMS.yaml [...] [--profile NAME] [--out DIR] [--force]``

Each run goes to ``<out>/<notebook-stem>/<params-stem>/``. Every params file is checked
against the notebook's ``parameters`` cell before anything runs. A run whose folder already
holds a complete result is skipped unless ``--force``; an earlier folder is never overwritten
but moved aside to ``<folder>.previous``. One process at a time holds a run folder
(:mod:`cxr_utils.runs.claim`): a second batch on the same output root waits for it, or with
``--no-wait`` skips it. A full, read-only or forbidden output disk stops the batch with one line
saying what to do (:mod:`cxr_utils.runs.storage`). Kernels inherit ``CXR_OUTPUT_DIR`` set to the
batch's output root, so a notebook finds earlier runs and caches where the batch writes. With
``--executor dask`` the runs go to Dask workers instead (:mod:`cxr_utils.runs.distributed`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .. import config, registry, results
from . import claim, storage

EXECUTED_NOTEBOOK = "notebook.ipynb"
HELD = "another batch is writing it (--no-wait)"  # the detail of a run skipped because its folder was held


@dataclass
class Outcome:
    """What happened to one params file."""

    run: str
    folder: Path
    status: str  # complete | done before | not run | failed
    seconds: float = 0.0
    detail: str = ""
    storage: bool = False  # failed because the disk refused a write: the batch stops


def plan_runs(
    notebook: str, params_files: Sequence[str | Path], profile: str = "none"
) -> list[tuple[str, dict[str, Any]]]:
    """Load and validate every params file before any run starts: keys and types against the
    notebook's ``parameters`` cell, then (for the pipeline's notebooks) the values the run would
    use after the profile, against the notebook's own check."""
    spec = config.notebook_parameters(notebook)
    check = _values_check(notebook, spec, profile)
    missing = [p for p in config.RUNNER_PARAMETERS if p not in spec]
    if missing:
        raise config.ConfigError(f"{notebook} lacks the runner parameters {missing}")
    planned, names = [], set()
    for path in params_files:
        params = config.load_params_file(path)
        reserved = [k for k in config.RUNNER_PARAMETERS if k in params]
        if reserved:
            raise config.ConfigError(f"{path}: {reserved} are set by the runner (--profile, --out and the file name)")
        config.validate_parameters(params, spec, where=str(path))
        check(params, where=str(path))
        name = Path(path).stem
        if name in names:
            raise config.ConfigError(f"two params files are named {name}; run names must be unique")
        names.add(name)
        planned.append((name, params))
    return planned


def parameter_check(stem: str) -> Callable[[dict[str, Any]], list[str]] | None:
    """The function rejecting a notebook's impossible parameter values before a run (ConfigError;
    it returns warnings), or None for notebooks that declare none."""
    from ..data import manifest
    from ..modeling import backbones, models

    return {
        registry.DATA_MERGE.stem: manifest.check_merge_params,
        registry.CUSTOM_CNN.stem: models.check_custom_cnn_params,
        registry.TRANSFER.stem: backbones.check_transfer_params,
    }.get(stem)


def _values_check(notebook: str, spec: dict[str, config.Parameter], profile: str):
    """A function checking one params file's effective values (a no-op for notebooks with no
    parameter check)."""
    stem = Path(notebook).stem
    values_check = parameter_check(stem)
    if values_check is None:
        return lambda params, where: None
    defaults = {name: p.default for name, p in spec.items()}

    def check(params: dict[str, Any], where: str) -> None:
        effective, _ = config.apply_profile({**defaults, **params, "profile": profile}, profile, stem)
        try:
            values_check(effective)
        except config.ConfigError as err:
            raise config.ConfigError(f"{where} (profile {profile}): {err}") from None

    return check


class Executor(Protocol):
    """Where a batch's runs go instead of one after another here (e.g. Dask workers)."""

    def splits_local_cores(self) -> bool:
        """Whether its workers divide this machine's cores among them (local workers): a batch
        of one run then goes here instead, with every core."""
        ...

    def run(
        self,
        nb_path: Path,
        planned: Sequence[tuple[str, dict[str, Any]]],
        base: Path,
        *,
        profile: str,
        force: bool,
        kernel: str | None,
        wait: bool,
    ) -> list[Outcome]: ...


def not_counted(notebook: str | Path, run: str) -> str:
    """ "run 02_custom_cnn/run03 was not counted": what a storage error meant for one run."""
    return f"run {Path(notebook).stem}/{run} was not counted"


def mark_failed(folder: Path, notebook: str, run: str, detail: str) -> None:
    """Record a run as failed (with the error) in its ``result.json``, whatever it held before."""
    result = results.read_result(folder) or {
        "run": run,
        "notebook": Path(notebook).stem,
        "warnings": [],
        "provenance": {},
    }
    result["status"] = "failed"
    result["error"] = detail
    result.setdefault("provenance", {})["finished"] = results.now()
    folder.mkdir(parents=True, exist_ok=True)
    results.write_json(folder / results.RESULT_FILE, result)


def describe_error(err: BaseException) -> str:
    """ "NameError: x is not defined (cell 5)" for a notebook's error; the exception otherwise."""
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename:
        cell = getattr(err, "exec_count", None)
        return f"{ename}: {evalue}" + (f" (cell {cell})" if cell else "")
    return f"{type(err).__name__}: {err}"


def execute_one(
    notebook: Path,
    name: str,
    params: dict[str, Any],
    folder: Path,
    profile: str,
    kernel: str | None,
    on_kernel: Callable[[int], None] | None = None,
) -> Outcome:
    """Run papermill for one params file into ``folder`` and classify the outcome; ``on_kernel``
    is told the kernel's pid. A storage error (here or in the kernel) raises
    :class:`~cxr_utils.runs.storage.StorageError` after recording the failure where it can."""
    import papermill

    started = time.monotonic()
    parameters = {**params, "run_name": name, "output_dir": str(folder), "profile": profile}
    what = not_counted(notebook, name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        papermill.execute_notebook(
            str(notebook),
            str(folder / EXECUTED_NOTEBOOK),
            parameters=parameters,
            cwd=str(notebook.parent),
            kernel_name=kernel,
            progress_bar=False,
            kernel_manager_class=ipc_kernel_manager(on_kernel),
        )
    except KeyboardInterrupt:
        record_failure(folder, notebook, name, "interrupted", what)
        raise
    except Exception as err:  # papermill raises many kinds; each is recorded, the batch goes on
        problem = storage.storage_errno(err)
        if problem:
            message = storage.explain(*problem, what, folder)
            withdraw_result(folder)  # papermill's last write of the notebook failed after the run said complete
            record_failure(folder, notebook, name, message, what)
            raise storage.StorageError(message) from None
        error = describe_error(err)
    else:
        error = "the notebook ended without marking its run complete"
    seconds = time.monotonic() - started
    result = results.read_result(folder) or {}
    status = str(result.get("status", ""))
    if status == "complete":
        result["phases"] = {**result.get("phases", {}), "wall_with_kernel": round(seconds, 3)}
        try:
            results.write_json(folder / results.RESULT_FILE, result)
        except OSError as err:  # the run is complete; only its wall time is missing
            print(f"note: {folder}: the wall time could not be added to result.json ({err.strerror})", flush=True)
        return Outcome(name, folder, "complete", seconds)
    if status.startswith("skipped"):  # the notebook stopped itself with a reason
        return Outcome(name, folder, "not run", seconds, status.split(": ", 1)[-1])
    record_failure(folder, notebook, name, error, what)
    return Outcome(name, folder, "failed", seconds, error)


INCOMPLETE_RESULT = "result.incomplete.json"


def withdraw_result(folder: Path) -> None:
    """Rename a ``result.json`` that says complete (a rename needs no free space) when the run's
    outputs could not all be written after it, so that such a run is never counted complete."""
    if results.is_complete(folder):
        (folder / results.RESULT_FILE).replace(folder / INCOMPLETE_RESULT)


def record_failure(folder: Path, notebook: Path, name: str, detail: str, what: str) -> None:
    """:func:`mark_failed`, where the disk allows; a storage error becomes a
    :class:`~cxr_utils.runs.storage.StorageError` saying the folder could not be updated."""
    try:
        mark_failed(folder, notebook.name, name, detail)
    except OSError as err:
        problem = storage.storage_errno(err)
        if not problem:
            raise
        explained = detail if storage.storage_errno(detail) else storage.explain(*problem, what, folder)
        raise storage.StorageError(
            f"{explained} (its result.json could not be updated: it is not complete, so a rerun redoes it)"
        ) from None


@contextlib.contextmanager
def output_root_for_kernels(base: Path) -> Iterator[None]:
    """Kernels started inside see ``CXR_OUTPUT_DIR=base``: every notebook of a batch reads earlier
    runs and caches from, and writes to, the one output root the batch was given."""
    previous = os.environ.get(config.OUTPUT_DIR_ENV)
    os.environ[config.OUTPUT_DIR_ENV] = str(base)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(config.OUTPUT_DIR_ENV, None)
        else:
            os.environ[config.OUTPUT_DIR_ENV] = previous


def ipc_kernel_manager(on_start: Callable[[int], None] | None = None):
    """A kernel manager whose kernels talk over local IPC sockets instead of TCP ports, and which
    tells ``on_start`` the pid of each kernel it starts.

    Nothing outside this machine can reach such a kernel, and ipykernel no longer warns at every
    start that it runs "over TCP without encryption".
    """
    import tempfile
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self) -> str:
            return str(Path(tempfile.gettempdir()) / f"cxr-kernel-{uuid.uuid4().hex[:12]}-ipc")

        async def _async_post_start_kernel(self, **kwargs: Any) -> None:
            await super()._async_post_start_kernel(**kwargs)
            pid = getattr(self.provisioner, "pid", None)
            if on_start is not None and pid:
                on_start(int(pid))

    return IPCKernelManager


def run_batch(
    notebook: str | Path,
    params_files: Sequence[str | Path],
    *,
    profile: str = "default",
    out: str | Path | None = None,
    force: bool = False,
    kernel: str | None = None,
    executor: Executor | None = None,
    wait: bool = True,
) -> list[Outcome]:
    """Execute ``notebook`` once per params file; returns one outcome per file. The runs go one
    after another here, or to ``executor`` (Dask workers, see :mod:`cxr_utils.runs.distributed`),
    except a single run when the executor's workers split this machine's cores: it runs here.
    A run folder another process holds is waited for, or skipped when ``wait`` is False.
    Raises :class:`~cxr_utils.runs.storage.StorageError` when the output disk refuses a write."""
    nb_path = config.notebook_path(notebook)
    config.load_profile(profile)  # fail early on an unknown profile
    planned = plan_runs(str(nb_path), params_files, profile)
    base = Path(out).resolve() if out else config.output_root()
    if executor is not None and len(planned) == 1 and executor.splits_local_cores():
        executor = None  # one run on one worker's share of the cores would leave the others idle
    with output_root_for_kernels(base):
        if executor is not None:
            outcomes = executor.run(nb_path, planned, base, profile=profile, force=force, kernel=kernel, wait=wait)
        else:
            outcomes = [
                _run_or_skip(nb_path, name, params, base, f"[{index}/{len(planned)}]", profile, force, kernel, wait)
                for index, (name, params) in enumerate(planned, start=1)
            ]
    print(summary_line(outcomes), flush=True)
    return outcomes


def summary_line(outcomes: Sequence[Outcome]) -> str:
    """ "2 complete, 1 done before, 0 not run, 1 failed; failed: run07"."""
    counts = {s: [o.run for o in outcomes if o.status == s] for s in ("complete", "done before", "not run", "failed")}
    return ", ".join(f"{len(runs)} {status}" for status, runs in counts.items()) + "".join(
        f"; {status}: {', '.join(runs)}" for status, runs in counts.items() if runs and status in ("not run", "failed")
    )


def _run_or_skip(
    nb_path: Path,
    name: str,
    params: dict[str, Any],
    base: Path,
    counter: str,
    profile: str,
    force: bool,
    kernel: str | None,
    wait: bool,
) -> Outcome:
    """One params file, holding its folder: skipped when a complete result of the same params and
    profile is there (unless ``force``), otherwise run into a fresh folder (an earlier one is set
    aside)."""
    folder = base / nb_path.stem / name
    prefix = f"{counter} {nb_path.stem}/{name}"
    with claimed(folder, not_counted(nb_path, name), wait) as held:
        if held is None:
            return Outcome(name, folder, "not run", detail=HELD)
        skipped = skip_or_set_aside(folder, name, params, prefix, profile, force, notebook_defaults(nb_path))
        if skipped:
            return skipped
        print(f"{prefix}: running (profile {profile})", flush=True)
        outcome = execute_one(nb_path, name, params, folder, profile, kernel, held.kernel_started)
    print(outcome_line(prefix, outcome), flush=True)
    return outcome


@contextlib.contextmanager
def claimed(folder: Path, what: str, wait: bool) -> Iterator[claim.Claim | None]:
    """:func:`claim.claim`, with a storage error met while holding the folder (or taking its lock)
    turned into a :class:`~cxr_utils.runs.storage.StorageError` naming the path."""
    try:
        with claim.claim(folder, wait=wait, say=lambda line: print(line, flush=True)) as held:
            yield held
    except OSError as err:
        problem = storage.storage_errno(err)
        if problem is None:
            raise
        raise storage.StorageError(storage.explain(*problem, what, folder)) from None


def notebook_defaults(nb_path: str | Path) -> dict[str, Any]:
    """The default value of each of a notebook's parameters."""
    return {name: p.default for name, p in config.notebook_parameters(nb_path).items()}


def skip_or_set_aside(
    folder: Path,
    name: str,
    params: dict[str, Any],
    prefix: str,
    profile: str,
    force: bool,
    defaults: dict[str, Any] | None = None,
) -> Outcome | None:
    """The decision for one params file, taken by the holder of its folder: a "done before"
    outcome when the folder holds a complete result of the same params (over the notebook's
    ``defaults``) and profile (unless ``force``); else None, the folder set aside."""
    done = done_before(folder, name, params, profile, force, defaults)
    if done:
        print(f"{prefix}: skipped (complete result in {folder}; --force to redo)", flush=True)
        return done
    stale = results.differs_from(folder, params, profile, defaults)
    if stale and results.is_complete(folder):
        print(f"{prefix}: the complete result in {folder} was made with other settings ({stale}); redoing", flush=True)
    results.set_aside(folder)
    return None


def done_before(
    folder: Path,
    name: str,
    params: dict[str, Any],
    profile: str,
    force: bool,
    defaults: dict[str, Any] | None = None,
) -> Outcome | None:
    """A "done before" outcome when ``folder`` holds a complete result of the same params and
    profile and ``force`` is off; None otherwise. Only reads: anyone may ask, holder or not."""
    if force or not results.is_complete(folder) or results.differs_from(folder, params, profile, defaults):
        return None
    return Outcome(name, folder, "done before", detail="already complete")


def outcome_line(prefix: str, outcome: Outcome) -> str:
    """ "[2/14] 02_custom_cnn/run02: complete in 61.2 s" (with the detail of a failed or skipped run)."""
    detail = f": {outcome.detail}" if outcome.detail else ""
    return f"{prefix}: {outcome.status} in {outcome.seconds:.1f} s{detail}"
