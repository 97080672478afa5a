"""The pipeline, named once: each notebook (file, kind, run folders) and the main job's stages.

Everything that needs a notebook's name or where its runs live (the runner, the run collector,
the report, the loaders of earlier outputs) asks this module instead of spelling it.
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
    check: str | None = None  # "module:function" rejecting impossible parameter values before a run

    @property
    def path(self) -> Path:
        """The notebook file."""
        return config.NOTEBOOKS_DIR / f"{self.stem}.ipynb"

    def runs_root(self, out: str | Path | None = None) -> Path:
        """The folder holding this notebook's run folders (``<output root>/<stem>``)."""
        return (Path(out).resolve() if out else config.output_root()) / self.stem

    def check_params(self, params: dict) -> list[str]:
        """Run the notebook's parameter check (ConfigError on impossible values); returns warnings."""
        return _resolve(self.check)(params) if self.check else []

    def run_folder(self, run: str, out: str | Path | None = None) -> Path:
        """``<output root>/<stem>/<run>``."""
        return self.runs_root(out) / run


DATA_MERGE = Notebook("01_data_merge", "data", "cxr_utils.data.manifest:check_merge_params")
CUSTOM_CNN = Notebook("02_custom_cnn", "custom", "cxr_utils.modeling.models:check_custom_cnn_params")
TRANSFER = Notebook("03_transfer_learning", "transfer", "cxr_utils.modeling.backbones:check_transfer_params")
COMPARISON = Notebook("04_comparison", "comparison")
REPORT = Notebook("05_report", "report")
SHORTCUTS = Notebook("06_shortcuts", "shortcuts")
SETUPS = Notebook("07_setups", "setups")
PREDICT = Notebook("08_predict", "predict")  # not a stage of the main job: users run it on their images

NOTEBOOKS = (DATA_MERGE, CUSTOM_CNN, TRANSFER, COMPARISON, REPORT, SHORTCUTS, SETUPS, PREDICT)
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


@dataclass(frozen=True)
class Stage:
    """One step of the main job: a notebook and the params files it runs.

    The params files match ``params_glob`` (in the project), or are written by ``params_from``
    ("module:function", called with the notebook's kind, the profile and the output root) from
    what earlier stages found. ``always`` stages read every run before them, so they are redone
    on each main job.
    """

    name: str
    notebook: Notebook
    params_glob: str | tuple[str, ...] | None = None
    always: bool = False
    params_from: str | None = None

    def params_files(self, profile: str, out: Path) -> list[Path]:
        """The stage's params files (an error names the stage when a glob matches none)."""
        if self.params_from:
            return _resolve(self.params_from)(self.notebook.kind, profile, out)
        globs = (self.params_glob,) if isinstance(self.params_glob, str) else self.params_glob
        files = sorted(path for pattern in globs for path in config.PROJECT_ROOT.glob(pattern))
        if not files:
            raise config.ConfigError(f"stage '{self.name}': no params files match {self.params_glob}")
        return files


FINAL_FIT_PARAMS = "cxr_utils.runs.final_fit:write_params"

# The main job (`make report`), in order.
STAGES = (
    Stage("data merge", DATA_MERGE, ("params/data/default.yaml", "params/data/seed_rules.yaml")),
    Stage("custom CNN grid", CUSTOM_CNN, "params/custom/run*.yaml"),
    Stage("transfer learning", TRANSFER, "params/transfer/*.yaml"),
    Stage("final fit: custom", CUSTOM_CNN, params_from=FINAL_FIT_PARAMS),
    Stage("final fit: transfer", TRANSFER, params_from=FINAL_FIT_PARAMS),
    Stage("comparison", COMPARISON, "params/report/comparison.yaml", always=True),
    Stage("shortcuts", SHORTCUTS, "params/report/shortcuts.yaml", always=True),
    Stage("set-ups", SETUPS, "params/report/setups.yaml", always=True),
    Stage("report", REPORT, "params/report/report.yaml", always=True),
)


def _resolve(target: str):
    """The function a "module:function" string names (imported when first needed)."""
    import importlib

    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)
