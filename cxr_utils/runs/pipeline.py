"""The main job (``make report``): every stage of :data:`cxr_utils.registry.STAGES` in order,
then the report export, with each stage's wall time printed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from .. import config, registry
from . import runner, storage

PROVISIONED = ("xception",)  # weights the main job provisions offline before its stages


def run_pipeline(
    stages: Sequence[registry.Stage] = registry.STAGES,
    *,
    profile: str = "default",
    out: str | Path | None = None,
    force: bool = False,
    export_to: str | Path | None = registry.REPORT_DIR,
    provision: Sequence[str] = (),
    executor: runner.Executor | None = None,
    wait: bool = True,
) -> bool:
    """Provision the named weights, then run every stage in order into one output root (``out``,
    else ``CXR_OUTPUT_DIR``, else ``outputs/``), export the report, print each stage's wall time.
    With ``executor``, the runs of each stage go to Dask workers in parallel; stages stay in order.
    A run folder another process holds is waited for (``wait``) or skipped.

    Returns False if any run failed (the report is then not exported).
    """
    base = Path(out).resolve() if out else config.output_root()
    for backbone in provision:
        provision_weights(backbone, base)
    timings, ok = [], True
    for stage in stages:
        started = time.monotonic()
        files = stage.params_files(profile, base)
        print(f"== stage: {stage.name} ({len(files)} runs)", flush=True)
        outcomes = runner.run_batch(
            stage.notebook.path,
            files,
            profile=profile,
            out=base,
            force=force or stage.always,
            executor=executor,
            wait=wait,
        )
        timings.append((stage.name, time.monotonic() - started))
        if any(o.status == "failed" for o in outcomes):
            ok = False
            print(f"stage '{stage.name}' had failed runs; later stages may lack inputs", flush=True)
    report_runs = [
        Path(s.params_glob).stem for s in stages if s.notebook is registry.REPORT and isinstance(s.params_glob, str)
    ]
    if ok and export_to is not None and report_runs:
        from ..reporting.export import export_run

        started = time.monotonic()
        report_run = report_runs[-1]
        print(f"report written to {export_run(report_run, export_to, base)}", flush=True)
        timings.append(("export", time.monotonic() - started))
    print(f"\nstage wall times (profile {profile}):")
    for name, seconds in timings:
        print(f"  {name:<20} {seconds / 60:6.2f} min")
    print(f"  {'total':<20} {sum(s for _, s in timings) / 60:6.2f} min")
    return ok


def provision_weights(backbone: str, base: Path) -> None:
    """Provision a backbone's weights where the runs of this output root look; a failure is
    reported and the job goes on (those runs are then reported as not run)."""
    from ..modeling import provision

    with runner.output_root_for_kernels(base):
        try:
            provision.provision(backbone)
        except config.ConfigError as err:
            print(f"{backbone} weights not provisioned ({err}): its runs will be reported as not run", flush=True)
        except OSError as err:
            problem = storage.storage_errno(err)
            if problem is None:
                raise
            raise storage.StorageError(storage.explain(*problem, f"provisioning {backbone} stopped", base)) from None
