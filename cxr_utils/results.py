"""``result.json``: what a run recorded, with the provenance needed to cite it.

A notebook opens a run with :func:`start_run` (status ``running``), records values as it goes
and calls :meth:`Run.complete` in its last cell. A folder whose ``result.json`` does not say
``complete`` is not a result: an interrupted run stays ``running`` and a failed one ``failed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from .config import PROJECT_ROOT, RUNNER_PARAMETERS, cpu_kernels, thread_limits

RESULT_FILE = "result.json"
PARAMS_FILE = "params.yaml"
VERSIONED_PACKAGES = (
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "numpy",
    "pandas",
    "scikit-learn",
    "pillow",
    "imagehash",
    "papermill",
    "matplotlib",
    "seaborn",
)


def now() -> str:
    """UTC timestamp in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_commit() -> str:
    """The project's commit, with ``-dirty`` when tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape the numbers."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine() -> dict[str, Any]:
    """CPU count, whether a GPU is visible, TensorFlow's CPU kernels and the thread-pool limits
    the run got (without importing TensorFlow): timings compare only at the same limits."""
    gpu = Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir())
    return {
        "cpu_count": os.cpu_count(),
        "gpu": bool(gpu),
        "platform": platform.platform(),
        "cpu_kernels": cpu_kernels(),
        "thread_limits": thread_limits(),
    }


def read_result(folder: str | Path) -> dict[str, Any] | None:
    """The folder's ``result.json``, or None when absent or unreadable."""
    path = Path(folder) / RESULT_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_complete(folder: str | Path) -> bool:
    """True only when the folder holds a result whose status is ``complete``."""
    result = read_result(folder)
    return bool(result) and result.get("status") == "complete"


def differs_from(
    folder: str | Path, params: Mapping[str, Any], profile: str, defaults: Mapping[str, Any] | None = None
) -> str:
    """What differs between a folder's recorded run and a planned one (its params file's values
    over the notebook's ``defaults``, and its profile); empty when nothing does or nothing is
    recorded. With the defaults, a key deleted from the params file counts as a change too."""
    result = read_result(folder)
    if not result:
        return ""
    changes = [f"profile {result.get('profile')} -> {profile}"] if result.get("profile") != profile else []
    requested = result.get("requested", {})
    planned = {
        key: value
        for key, value in {**(defaults or {}), **params}.items()
        if key not in RUNNER_PARAMETERS and (key in params or key in requested)
    }
    changes += [
        f"{key} {requested.get(key)!r} -> {value!r}" for key, value in planned.items() if requested.get(key) != value
    ]
    return "; ".join(changes)


def set_aside(folder: str | Path) -> Path | None:
    """Move an existing run folder to ``<folder>.previous`` (replacing an older one); say so."""
    folder = Path(folder)
    if not folder.exists() or not any(folder.iterdir()):
        return None
    previous = folder.with_name(folder.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    folder.rename(previous)
    print(f"note: the earlier contents of {folder} were moved to {previous}")
    return previous


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically: a crash or a full disk never leaves half a file (the earlier file
    stays as it was, and no temporary file is left behind)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot record {type(value).__name__} in result.json")


class RunSkipped(Exception):
    """Raised by :meth:`Run.skip` to stop a notebook that cannot run (e.g. no weights)."""


@dataclass
class Run:
    """A run in progress: its folder and the ``result.json`` being written."""

    folder: Path
    result: dict[str, Any]

    def record(self, **values: Any) -> None:
        """Add or replace top-level fields and save."""
        self.result.update(values)
        self.save()

    def warn(self, message: str) -> None:
        """Record a warning (shown in the notebook and kept in ``result.json``)."""
        print(f"WARNING: {message}")
        self.result["warnings"].append(message)
        self.save()

    def skip(self, reason: str) -> None:
        """Record ``skipped: <reason>`` and stop the notebook here (the batch goes on)."""
        self.result["status"] = f"skipped: {reason}"
        self.result["provenance"]["finished"] = now()
        self.save()
        raise RunSkipped(reason)

    def complete(self) -> None:
        """Mark the run complete: the last thing a notebook does."""
        self.result["status"] = "complete"
        self.result["provenance"]["finished"] = now()
        self.result.setdefault("peak_memory_mib", {})["whole_run"] = peak_memory_mib()
        self.save()
        print(f"run complete: {self.folder / RESULT_FILE}")

    @contextlib.contextmanager
    def phase(self, name: str):
        """Time a part of the run: ``with run.phase("training"): ...`` adds its seconds to ``phases``
        and the process's peak memory at its end to ``peak_memory_mib``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.result.setdefault("phases", {})[name] = round(time.perf_counter() - started, 3)
            self.result.setdefault("peak_memory_mib", {})[name] = peak_memory_mib()
            self.save()

    def save(self) -> None:
        write_json(self.folder / RESULT_FILE, self.result)


def seconds_since_process_start() -> float | None:
    """How long this process has run (in a notebook: kernel start and imports so far)."""
    try:
        import psutil

        return round(time.time() - psutil.Process().create_time(), 3)
    except (ImportError, OSError):
        return None


def peak_memory_mib() -> float | None:
    """This process's peak resident memory so far, in MiB: ``VmHWM`` of /proc/self/status, which
    starts afresh with the process image (``getrusage``'s maxrss would carry the peak of the parent
    that forked a kernel); None where there is no /proc."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return None if kib is None else round(kib / 1024, 1)


def start_run(
    notebook: str,
    kind: str,
    requested: Mapping[str, Any],
    effective: Mapping[str, Any],
    changed: Mapping[str, Any],
    folder: Path,
) -> Run:
    """Open a run folder, write the effective ``params.yaml`` and a ``running`` result.

    If the folder already holds an earlier run's result it is set aside first (see
    :func:`set_aside`), never overwritten; the batch runner decides beforehand whether a run
    may be redone and hands over a folder without a result.
    """
    folder = Path(folder)
    if (folder / RESULT_FILE).exists():
        set_aside(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PARAMS_FILE).write_text(yaml.safe_dump(dict(effective), sort_keys=False))
    result = {
        "run": effective.get("run_name"),
        "notebook": Path(notebook).stem,
        "kind": kind,
        "profile": effective.get("profile"),
        "requested": dict(requested),
        "effective": dict(effective),
        "changed_by_profile": dict(changed),
        "status": "running",
        "warnings": [],
        "metrics": {},
        "phases": {"kernel_start_and_imports": seconds_since_process_start()},
        "provenance": {
            "git_commit": git_commit(),
            "started": now(),
            "finished": None,
            "versions": library_versions(),
            **machine(),
        },
    }
    run = Run(folder, result)
    run.save()
    return run
