"""The main job (``make report``): every stage of :data:`STAGES` in order, then the report
export, with each stage's wall time printed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .. import config, registry
from . import final_fit, halving, runner, storage

if TYPE_CHECKING:
    from ..modeling.backbones import Weights

LUNGS = "lungs"  # the lung segmentation model, provisioned (trained once, cached) before the shortcut stage
FEATURES = "features"  # frozen features of every image, before the transfer stage, when local workers share the cores
PROVISIONED = ("xception", FEATURES, LUNGS)  # what the main job provisions offline (--no-provision: nothing)


@dataclass(frozen=True)
class Stage:
    """One step of the main job: a notebook and the params files it runs.

    The params files match ``params_glob`` (in the project), or are written by ``params_from``
    (called with the notebook's kind, the profile and the output root) from what earlier stages
    found. A profile may keep only some of them (``notebooks: {<stem>: {only: [...]}}``).
    ``always`` stages read every run before them, so they are redone on each main job.
    """

    name: str
    notebook: registry.Notebook
    params_glob: str | tuple[str, ...] | None = None
    always: bool = False
    params_from: Callable[[str, str, Path], list[Path]] | None = None

    def params_files(self, profile: str, out: Path) -> list[Path]:
        """The stage's params files at this profile (an error names the stage when none is left)."""
        if self.params_from:
            return self.params_from(self.notebook.kind, profile, out)
        globs = (self.params_glob,) if isinstance(self.params_glob, str) else self.params_glob
        files = sorted(path for pattern in globs for path in config.PROJECT_ROOT.glob(pattern))
        only = config.profile_only(profile, self.notebook.stem)
        if only is not None:
            files = [path for path in files if path.stem in only]
        if not files:
            kept = f" kept by profile {profile} ({', '.join(only)})" if only is not None else ""
            raise config.ConfigError(f"stage '{self.name}': no params files{kept} match {self.params_glob}")
        return files


# The main job (`make report`), in order.
STAGES = (
    Stage("data merge", registry.DATA_MERGE, ("params/data/default.yaml", "params/data/seed_rules.yaml")),
    Stage("custom CNN grid", registry.CUSTOM_CNN, "params/custom/run*.yaml"),
    Stage("transfer learning", registry.TRANSFER, "params/transfer/*.yaml"),
    Stage("custom CNN seeds", registry.CUSTOM_CNN, params_from=halving.write_params),
    Stage("transfer seeds", registry.TRANSFER, params_from=halving.write_params),
    Stage("final fit: custom", registry.CUSTOM_CNN, params_from=final_fit.write_params),
    Stage("final fit: transfer", registry.TRANSFER, params_from=final_fit.write_params),
    Stage("comparison", registry.COMPARISON, "params/report/comparison.yaml", always=True),
    Stage("shortcuts", registry.SHORTCUTS, "params/report/shortcuts.yaml", always=True),
    Stage("set-ups", registry.SETUPS, "params/report/setups.yaml", always=True),
    Stage("report", registry.REPORT, "params/report/report.yaml", always=True),
)


def run_pipeline(
    stages: Sequence[Stage] = STAGES,
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
    With :data:`LUNGS` in ``provision``, the lung model at the profile's settings is provisioned
    into that root's cache just before the first shortcut stage (its time a row of the table);
    with :data:`FEATURES` and an executor whose workers split this machine's cores, the frozen
    features of the first transfer stage's backbones (:func:`provision_features`) just before it.
    With ``executor``, the runs of each stage go to Dask workers in parallel; stages stay in order.
    A run folder another process holds is waited for (``wait``) or skipped.

    Returns False if any run failed or was skipped as held by another batch (the report is then
    not exported: it would lack those runs).
    """
    base = Path(out).resolve() if out else config.output_root()
    note_renamed_folders(base)
    for backbone in provision:
        if backbone not in (LUNGS, FEATURES):
            provision_weights(backbone, base)
    timings, ok, lungs_due = [], True, LUNGS in provision
    features_due = FEATURES in provision and executor is not None and executor.splits_local_cores()
    for stage in stages:
        if lungs_due and stage.notebook is registry.SHORTCUTS:
            timings.append(("lung model", provision_lungs(profile, base)))
            lungs_due = False
        if features_due and stage.notebook is registry.TRANSFER:
            timings.append(("frozen features", provision_features(stage, profile, base)))
            features_due = False
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
        if any(o.detail == runner.HELD for o in outcomes):
            ok = False
            print(f"stage '{stage.name}' skipped runs another batch is writing (--no-wait); no report", flush=True)
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


def note_renamed_folders(base: Path) -> None:
    """Say what happens to run folders of a build from before the notebooks took their course-order
    numbers: their stages read every run before them and are redone on each main job anyway, so
    they are rerun under the new names; the old folders are left as they are."""
    for old, entry in registry.RENAMED.items():
        if (base / old).is_dir():
            print(
                f"note: {base / old} is from a build before the notebooks were numbered in course order "
                f"({old} is now {entry.stem}); that stage reruns into {base / entry.stem} as every main job does "
                "(the old folder is left untouched; delete it when you no longer need it)",
                flush=True,
            )


def raise_storage_error(err: OSError, what: str, base: Path) -> NoReturn:
    """Raise a storage error (disk full, read-only, quota) as a StorageError naming the path and
    ``what`` it stopped; any other OSError as it is."""
    problem = storage.storage_errno(err)
    if problem is None:
        raise err
    raise storage.StorageError(storage.explain(*problem, what, base)) from None


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
            raise_storage_error(err, f"provisioning {backbone} stopped", base)


def provision_features(stage: Stage, profile: str, base: Path) -> float:
    """Compute once, here with every core, the frozen features the runs of a transfer ``stage``
    read: for each (backbone, size, precision, manifest) among its runs whose ImageNet weights are
    found offline, every image of the manifest, into ``<base>/cache/features/``. One after
    another, the runs compute each image once anyway; on local workers two runs of one backbone
    (e.g. ``xception`` and ``xception_finetune``) would compute the same images at the same time,
    each on one core. A backbone without weights is left to its runs, which report it; a cache
    that cannot be filled is reported, and the runs fill it themselves. Returns the seconds."""
    import keras

    from ..modeling import backbones, experiment, features, precision

    started, wanted = time.monotonic(), {}
    defaults = runner.notebook_defaults(stage.notebook.path)
    with runner.output_root_for_kernels(base):
        for path in stage.params_files(profile, base):
            params, _ = config.apply_profile(
                {**defaults, **config.load_params_file(path), "profile": profile}, profile, stage.notebook.stem
            )
            if params["weights"] != "imagenet":
                continue  # random init is never cached
            try:
                weights = backbones.resolve_weights(params["backbone"], "imagenet", params["weights_path"])
            except config.ConfigError:  # missing or damaged weights: the run reports it
                continue
            policy = precision.choose_policy(params["precision"])
            key = (
                params["backbone"],
                weights.sha256,
                params["image_size"],
                policy.policy,
                experiment.manifest_file(params),
            )
            wanted.setdefault(key, (weights, policy))
        previous = keras.mixed_precision.global_policy()
        try:
            for (backbone, _, size, _, manifest), (weights, policy) in wanted.items():
                precision.apply_policy(policy)
                cache = features.cache_folder(backbone, weights, size, policy.policy)
                done = fill_features(backbone, weights, size, cache, manifest, base)
                print(f"frozen features {cache.name}: {done}", flush=True)
        finally:
            keras.mixed_precision.set_global_policy(previous)
    return time.monotonic() - started


def fill_features(backbone: str, weights: Weights, size: int, cache: Path, manifest: Path, base: Path) -> str:
    """Fill one feature cache with every image of ``manifest``; says what happened. A full or
    read-only disk stops the job; any other error (a damaged weights file, a missing manifest) is
    reported and left to the runs, which compute their own features and report it too."""
    from ..data import datasets
    from ..modeling import backbones, features

    try:
        record = features.fill_cache(
            lambda: backbones.build_extractor(backbone, weights, size),
            datasets.read_manifest(manifest),
            size,
            cache,
            root=config.data_root(),
        )
    except Exception as err:
        if isinstance(err, OSError) and storage.storage_errno(err):
            raise_storage_error(err, "provisioning frozen features stopped", base)
        return f"not provisioned ({type(err).__name__}: {err}); its runs compute their own"
    return f"{record['computed']} images computed, {record['reused']} found in the cache, {record['seconds']:.0f} s"


def provision_lungs(profile: str, base: Path, n_boot: int = 1000) -> float:
    """Provision the lung segmentation model at the profile's settings (notebook 05's
    ``lung_unet``) into ``<base>/cache/lungs/``, where notebook 05 looks (its kernels see
    ``CXR_OUTPUT_DIR=base``): trained once, then reused. Prints whether it was trained or found,
    its Dice and IoU on JSRT and the held-back images, and the seconds it took; returns them.
    Missing mask sets are reported and the job goes on (notebook 05 then uses the fixed
    rectangle for every image and says so)."""
    from ..analysis import lungs

    started = time.monotonic()
    try:
        settings = lungs.profile_settings(profile)
        found = lungs.cached(base / "cache", settings)
        path = found or lungs.provision(base / "cache", settings)
        measured = lungs.measure(path, n_boot=n_boot)
    except config.ConfigError as err:
        print(f"lung model not provisioned ({err}): notebook 05 uses the fixed rectangle for every image", flush=True)
        return time.monotonic() - started
    except OSError as err:
        raise_storage_error(err, "provisioning the lung model stopped", base)
    seconds = time.monotonic() - started
    record = measured["training"]
    how = (
        "found in the cache"
        if found
        else f"trained in {record['train_seconds']:.0f} s ({record['epochs_run']} epochs on {record['train_images']} "
        f"images at {record['settings']['size']} px, {record['cpu']} x{record['cores']})"
    )
    print(f"lung model {path.name} (profile {profile}): {how}; {lungs.measure_line(measured)}", flush=True)
    print(f"lung model provisioned and measured in {seconds:.0f} s", flush=True)
    return seconds
