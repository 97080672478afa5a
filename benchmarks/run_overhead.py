"""Where a training run's time goes: kernel start and imports, loading, training, scoring.

    .venv/bin/python benchmarks/run_overhead.py [--out outputs] [--notebook 02_custom_cnn] [--profile default]

Reads the ``phases`` every run records in ``result.json`` (seconds of each part, plus
``wall_with_kernel``: the runner's wall time for the whole papermill execution, kernel start to
shutdown) and prints, per run and in total, the training time and the overhead around it (every
second of the run that is not the ``training`` phase). A script, not a test: run it on an idle
machine after a grid, and compare numbers only within one machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cxr_utils import registry  # noqa: E402
from cxr_utils.reporting import collect  # noqa: E402

TRAINING_PHASES = ("training", "head", "fine_tuning")


def phase_table(out: str | None, notebook: str, profile: str | None) -> pd.DataFrame:
    """One row per complete run: each recorded phase's seconds, training and overhead."""
    rows = []
    for result in collect.completed_runs(registry.notebook(notebook), out, include_smoke=profile == "smoke"):
        if profile and result.get("profile") != profile or "wall_with_kernel" not in result.get("phases", {}):
            continue
        phases = result["phases"]
        training = sum(phases.get(p, 0.0) for p in TRAINING_PHASES)
        rows.append(
            {
                "run": result["run"],
                **phases,
                "training_total": training,
                "overhead": phases["wall_with_kernel"] - training,
                "precision": (result.get("precision") or {}).get("policy"),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="output root (default: CXR_OUTPUT_DIR or outputs/)")
    parser.add_argument("--notebook", default=registry.CUSTOM_CNN.stem)
    parser.add_argument("--profile", default="default")
    args = parser.parse_args()
    table = phase_table(args.out, args.notebook, args.profile)
    if table.empty:
        sys.exit(f"no complete runs of {args.notebook} at profile {args.profile} with recorded phases")
    print(table.round(2).to_string(index=False))
    wall, overhead = table["wall_with_kernel"].sum(), table["overhead"].sum()
    print(
        f"\n{len(table)} runs: {wall:.1f} s wall, {overhead:.1f} s outside training "
        f"({overhead / wall:.0%}); per run: {table['overhead'].median():.1f} s median overhead, "
        f"{table['kernel_start_and_imports'].median():.1f} s of it kernel start and imports"
    )


if __name__ == "__main__":
    main()
