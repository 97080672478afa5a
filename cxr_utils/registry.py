"""The notebooks, named once: each one's file, kind and run folders, in course order.

Everything that needs a notebook's name or where its runs live (the runner, the run collector,
the report, the loaders of earlier outputs) asks this module instead of spelling it. The main
job's stages are in :mod:`cxr_utils.runs.pipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import config


@dataclass(frozen=True)
class Notebook:
    """One notebook of the pipeline."""

    stem: str  # file name without .ipynb; also the folder of its runs under the output root
    kind: str  # what its runs are: data | custom | transfer | comparison | report | shortcuts | ...

    @property
    def path(self) -> Path:
        """The notebook file."""
        return config.NOTEBOOKS_DIR / f"{self.stem}.ipynb"

    def runs_root(self, out: str | Path | None = None) -> Path:
        """The folder holding this notebook's run folders (``<output root>/<stem>``)."""
        return (Path(out).resolve() if out else config.output_root()) / self.stem

    def run_folder(self, run: str, out: str | Path | None = None) -> Path:
        """``<output root>/<stem>/<run>``."""
        return self.runs_root(out) / run


DATA_MERGE = Notebook("01_data_merge", "data")
CUSTOM_CNN = Notebook("02_custom_cnn", "custom")
TRANSFER = Notebook("03_transfer_learning", "transfer")
COMPARISON = Notebook("04_comparison", "comparison")
SHORTCUTS = Notebook("05_shortcuts", "shortcuts")
SETUPS = Notebook("06_setups", "setups")
REPORT = Notebook("07_report", "report")
PREDICT = Notebook("08_predict", "predict")  # not a stage of the main job: users run it on their images

NOTEBOOKS = (DATA_MERGE, CUSTOM_CNN, TRANSFER, COMPARISON, SHORTCUTS, SETUPS, REPORT, PREDICT)  # course order
RENAMED = {
    "05_" + "report": REPORT,
    "06_" + "shortcuts": SHORTCUTS,
    "07_" + "setups": SETUPS,
}  # stems before course order
TRAINING = {nb.kind: nb for nb in (CUSTOM_CNN, TRANSFER)}  # kinds whose runs train a model
MANIFEST_FILE = "manifest.csv"
REPORT_DIR = config.PROJECT_ROOT / "report"


def notebook(stem_or_path: str | Path) -> Notebook:
    """The registry entry of a notebook, from its stem or path."""
    stem = Path(stem_or_path).stem
    for entry in NOTEBOOKS:
        if entry.stem == stem:
            return entry
    raise config.ConfigError(
        f"notebook {stem} is not part of the pipeline (known: {', '.join(n.stem for n in NOTEBOOKS)})"
    )


def manifest_file(data_run: str, out: str | Path | None = None) -> Path:
    """The ``manifest.csv`` written by a data-merge run."""
    return DATA_MERGE.run_folder(data_run, out) / MANIFEST_FILE
