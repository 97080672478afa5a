"""Successive halving on the screening runs: the leading configurations, run again with more seeds.

One seed per configuration ranks the study's grid by noise as much as by merit: the same run's
screening val AUC moved by 0.1-0.3 between machines and precisions. So after the one-seed pass,
the ``top`` eligible configurations of a kind (ties at the cut included; see
:func:`cxr_utils.reporting.collect.leaders`) are run again until each has ``seeds`` seeds, and the
choice is made on the mean (:func:`cxr_utils.reporting.collect.choose_on_val`). The extra seeds are
ordinary runs, ``<run>_seed2``, ``<run>_seed3``, …: resumable, Dask-able, each with its own
folder and ``result.json`` (``screened_as`` names the configuration they repeat).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .. import config, registry, results
from ..reporting import collect
from . import claim
from .final_fit import params_folder, replace_params_files

PARAMS_FOLDER = "screening_seeds"


def run_name(configuration: str, seed_index: int) -> str:
    """``run05_seed2``: the k-th seed (1-based; the first is the screening run itself)."""
    return f"{configuration}_seed{seed_index}"


def write_params(kind: str, profile: str, out: str | Path | None = None) -> list[Path]:
    """Write one params file per extra seed of each leading ``kind`` configuration: the screening
    run's own params with the next seeds and ``screened_as``. None when the profile asks for one
    seed, or fewer than two configurations are eligible (nothing to rank)."""
    settings = config.screening_seed_settings(profile)
    table = collect.runs_table(profile=profile, out=out, role="screening")
    refit_fine_tuning = config.final_fit_settings(profile)["fine_tune"]
    names = collect.leaders(table, kind, settings["top"], refit_fine_tuning)
    folder = params_folder(out, PARAMS_FOLDER, kind)
    if settings["seeds"] < 2 or len(names) < 2:
        why = "one seed at this profile" if settings["seeds"] < 2 else f"{len(names)} eligible configuration(s)"
        print(f"screening seeds: {kind}: {why}; no extra seeds", flush=True)
        set_aside_stale_seeds(kind, profile, out, planned=set())
        return replace_params_files(folder, {})
    texts = {}
    for name in names:
        result = collect.find_run(collect.RunKey(kind, name), out)
        own = {k: v for k, v in result["requested"].items() if k not in config.RUNNER_PARAMETERS}
        for k in range(2, settings["seeds"] + 1):
            params = {**own, "role": "screening", "screened_as": name, "seed": own["seed"] + k - 1}
            texts[run_name(name, k)] = f"# Screening seed {k} of {kind} {name} (a leader at profile {profile})\n" + (
                yaml.safe_dump(params, sort_keys=False)
            )
    set_aside_stale_seeds(kind, profile, out, planned=set(texts))
    files = replace_params_files(folder, texts)
    print(f"screening seeds: {kind}: {', '.join(names)} lead; {len(files)} extra runs", flush=True)
    return files


def set_aside_stale_seeds(kind: str, profile: str, out: str | Path | None, planned: set[str]) -> None:
    """Move aside the extra-seed runs of this profile that the current plan no longer has (an earlier
    build's leaders, or more seeds than the profile now asks for), so that they never count in a
    configuration's mean; a folder another batch holds is left alone."""
    for folder in collect.run_folders(registry.TRAINING[kind], out):
        result = results.read_result(folder) or {}
        extra_seed = result.get("role") == "screening" and result.get("screened_as")
        if not extra_seed or folder.name in planned or result.get("profile") != profile:
            continue
        with claim.claim(folder, wait=False, say=lambda line: None) as held:
            if held is not None:
                print(f"screening seeds: {folder.name} is no longer in the plan; set aside", flush=True)
                results.set_aside(folder)
