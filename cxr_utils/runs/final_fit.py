"""The final fit: the configurations chosen on val, refitted on every training image until
converged (early stopping on val AUC), once per seed.

The screening runs (the study's grid, the transfer runs) are compared on val; the chosen custom
and transfer configurations are then trained again with the profile's ``final_fit`` settings
(all training images, an epoch cap and a patience) and several seeds. These final models, not the
screening runs, are the ones scored on test and external.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .. import config, registry
from ..reporting import collect

PARAMS_FOLDER = "final_fit"


def chosen_configuration(kind: str, profile: str, out: str | Path | None = None) -> collect.RunKey | None:
    """The screening run of ``kind`` chosen on val AUC at this profile (see :func:`collect.choose_on_val`)."""
    table = collect.runs_table(profile=profile, out=out, role="screening")
    return collect.choose_on_val(table, kind, fine_tune=config.final_fit_settings(profile)["fine_tune"])


def run_name(screened_as: str, seed_index: int) -> str:
    """``final_run02_seed1``: the final fit of a screening run with its k-th seed (1-based)."""
    return f"final_{screened_as}_seed{seed_index}"


def write_params(kind: str, profile: str, out: str | Path | None = None) -> list[Path]:
    """Write one params file per seed for the final fit of the chosen ``kind`` configuration:
    the screening run's own params with ``role: final``, ``screened_as`` and the seed (its own
    seed first, then the next ones). Returns the files; none when no configuration is eligible."""
    key = chosen_configuration(kind, profile, out)
    folder = params_folder(out, PARAMS_FOLDER, kind)
    if key is None:
        print(f"final fit: no eligible {kind} configuration at profile {profile}; nothing to refit", flush=True)
        return replace_params_files(folder, {})
    result = collect.find_run(key, out)
    own = {k: v for k, v in result["requested"].items() if k not in config.RUNNER_PARAMETERS}
    texts = {}
    for k in range(config.final_fit_settings(profile)["seeds"]):
        params = {**own, "role": "final", "screened_as": key.run, "seed": own["seed"] + k}
        texts[run_name(key.run, k + 1)] = f"# Final fit {k + 1} of {key} (chosen on val at profile {profile})\n" + (
            yaml.safe_dump(params, sort_keys=False)
        )
    files = replace_params_files(folder, texts)
    print(f"final fit: {key} chosen on val; {len(files)} seeds", flush=True)
    return files


def params_folder(out: str | Path | None, name: str, kind: str) -> Path:
    """``<output root>/<name>/<kind>``: where a stage's generated params files live."""
    return (Path(out).resolve() if out else config.output_root()) / name / kind


def replace_params_files(folder: Path, texts: dict[str, str]) -> list[Path]:
    """Make ``folder`` hold exactly the params files ``<name>.yaml`` with these texts. Each is
    written to a temporary file and renamed, and only files no longer wanted are removed, so a
    second main job on the same output root, writing the same files, never sees one missing."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, text in texts.items():
        path = folder / f"{name}.yaml"
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text)
        tmp.replace(path)
        files.append(path)
    for stale in set(folder.glob("*.yaml")) - set(files):
        stale.unlink(missing_ok=True)
    return files


def final_runs(key: collect.RunKey, out: str | Path | None = None, profile: str | None = None) -> list[dict]:
    """The complete final fits of a chosen configuration, by seed (first seed first)."""
    runs = [
        r
        for r in collect.completed_runs(registry.TRAINING[key.kind], out, include_smoke=profile == "smoke")
        if r.get("role") == "final"
        and r.get("screened_as") == key.run
        and (profile is None or r.get("profile") == profile)
    ]
    return sorted(runs, key=lambda r: r["effective"]["seed"])


def probed_models(comparison: dict, out: str | Path | None = None) -> dict[collect.RunKey, dict]:
    """The model of each kind that a comparison run reports on: the first seed of the chosen
    configuration's final fits, or the chosen screening run where there are none (smoke runs)."""
    probed = {}
    for kind, run in comparison.get("chosen", {}).items():
        finals = comparison.get("final_fits", {}).get(str(collect.RunKey(kind, run)), [])
        key = collect.RunKey(kind, finals[0] if finals else run)
        probed[key] = collect.find_run(key, out)
    return probed
