"""Score your own X-ray with the models a build made: probability, decision, saliency, and a
warning when the image is unlike the training data.

``python -m cxr_utils predict IMAGE|FOLDER [...] [--model custom transfer] [--out DIR]``

The models are the ones the latest build reports on (the first seed of each final fit, found
through the comparison run), each with the threshold chosen on val. The out-of-distribution
(OOD) score of an image is the mean distance of its frozen ImageNet features to its nearest
training images; an image is flagged when that distance is beyond the 99th percentile of the val
images' distances (and always when it is a colour image: radiographs are grey). Bad files get a
row with the reason; nothing stops the batch.

Each Grad-CAM overlay outlines the image's lungs (yellow), and ``lung_share`` is the share of the
map's mass inside them: the lung segmentation model's mask where the build cached one (the model
the shortcut run used, else the one of the build's profile; nothing is trained here), the fixed
central rectangle where there is none or where the image's mask is flagged as implausible; the
``lung_mask`` column says which, image by image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import config, registry, results
from .analysis import heldout, lungs, saliency
from .data import datasets
from .data.images import ImageReadError, open_checked, resize_gray8, to_gray8
from .modeling import backbones, features, training
from .reporting.collect import RunKey
from .runs import final_fit

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm"}
MAX_PIXELS = 40_000_000  # a larger file is refused ("too_large"): radiographs are at most a few megapixels
OOD_PERCENTILE = 99.0
NEIGHBOURS = 5
CAVEAT = (
    "Research code, not a medical device: these scores must not be used for diagnosis. {finding} "
    "See the report's section 'What is the model looking at?' ({report})."
)
COLUMNS = ["path", "model", "run", "probability", "decision", "threshold", "ood_flag", "ood_score", "ood_threshold",
           "note", "error", "saliency", "lung_share", "lung_mask"]  # fmt: skip
RECTANGLE = "fixed rectangle"


class NoBuild(config.ConfigError):
    """No build with models to use: the message names the folders looked in."""


@dataclass
class Model:
    """A model ready to score images: its run, saved model, threshold and what to cite."""

    key: RunKey
    result: dict
    model: object
    threshold: float

    @property
    def size(self) -> int:
        return int(self.result["effective"]["image_size"])

    def provenance(self) -> dict:
        """Run, commit, profile and training data of the model."""
        data = self.result.get("data", {})
        return {
            "model": str(self.key),
            "run": self.key.run,
            "kind": self.key.kind,
            "profile": self.result["profile"],
            "commit": self.result.get("provenance", {}).get("git_commit"),
            "threshold": self.threshold,
            "training images": data.get("n_per_split", {}).get("train"),
            "manifest sha256": data.get("manifest_sha256"),
            "folder": self.result["folder"],
        }


def load_models(
    comparison_run: str = "comparison", kinds: tuple[str, ...] = ("custom", "transfer"), out: str | Path | None = None
) -> list[Model]:
    """The models a build reports on (first seed of each final fit) with their val-chosen
    thresholds; :class:`NoBuild` naming the folders looked in when there is none."""
    folder = registry.COMPARISON.run_folder(comparison_run, out)
    comparison = results.read_result(folder)
    if not comparison or comparison.get("status") != "complete":
        raise NoBuild(
            f"no finished build found: looked for {folder / results.RESULT_FILE} (output root "
            f"{folder.parent.parent}); run `make report` first, or pass the output root with --out-root"
        )
    probed = final_fit.probed_models(comparison, out)
    chosen = [key for key in probed if key.kind in kinds]
    if not chosen:
        raise NoBuild(f"the build in {folder} has no {' or '.join(kinds)} model")
    return [
        Model(key, probed[key], heldout.load_run_model(probed[key]), comparison["heldout"][str(key)]["threshold"])
        for key in chosen
    ]


def image_files(inputs: list[str | Path]) -> list[Path]:
    """Files named directly, and the image files inside folders named (sorted)."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(item)
    return found


@dataclass
class Loaded:
    """One input file: its 8-bit gray pixels (None when it could not be read) and notes."""

    path: Path
    gray: np.ndarray | None
    notes: list[str] = field(default_factory=list)
    error: str = ""
    colour: bool = False


def load_image(path: Path) -> Loaded:
    """Decode one file for scoring; a file that cannot be used gets its reason, never an exception."""
    try:
        img = open_checked(path, max_pixels=MAX_PIXELS)
    except ImageReadError as err:
        return Loaded(path, None, error=f"{err.reason}: {err.detail}")
    notes, colour = [], False
    if img.mode not in ("L", "1"):
        notes.append(f"converted from pixel mode {img.mode} to 8-bit grey")
    if img.mode in ("RGB", "RGBA", "P", "CMYK"):
        rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
        colour = float(np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).mean()) > 4.0
        if colour:
            notes.append("a colour image: radiographs are grey")
    return Loaded(path, to_gray8(img), notes, colour=colour)


@dataclass
class OODReference:
    """The training images' frozen features, and the distance beyond which an image is unlike them."""

    backbone: str
    weights: backbones.Weights
    size: int
    policy: str
    train: np.ndarray
    threshold: float
    neighbours: int = NEIGHBOURS

    @classmethod
    def fitted(
        cls,
        backbone: str,
        weights: backbones.Weights,
        size: int,
        policy: str,
        train_vectors: np.ndarray,
        val_vectors: np.ndarray,
    ) -> OODReference:
        """The reference of these training vectors; its threshold the 99th percentile of the val scores."""
        reference = cls(backbone, weights, size, policy, _normalised(train_vectors), np.inf)
        reference.threshold = float(np.percentile(reference.scores(val_vectors), OOD_PERCENTILE))
        return reference

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Mean Euclidean distance of each (L2-normalised) vector to its nearest training images."""
        from sklearn.neighbors import NearestNeighbors

        index = NearestNeighbors(n_neighbors=min(self.neighbours, len(self.train))).fit(self.train)
        distances, _ = index.kneighbors(_normalised(vectors))
        return distances.mean(axis=1)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def ood_reference(
    manifest: pd.DataFrame, backbone: str, weights: backbones.Weights, size: int, policy: str = "float32"
) -> OODReference:
    """Fit the OOD reference on the cached features of a build's training images; its threshold is
    the 99th percentile of the val images' scores."""
    cache = features.cache_folder(backbone, weights, size, policy)

    def split_features(split: str) -> np.ndarray:
        arrays = datasets.load_split(manifest, split, size, root=config.data_root())
        found = features.extract_lazily(
            lambda: backbones.build_extractor(backbone, weights, size), arrays.x, arrays.rows["sha256"].tolist(), cache
        )
        return found.features

    return OODReference.fitted(backbone, weights, size, policy, split_features("train"), split_features("val"))


def reference_for(
    models: list[Model], names: list[str] | tuple[str, ...] = ("xception", "mobilenet025")
) -> OODReference:
    """The OOD reference of a build: the transfer model's own backbone and features where there
    is one, else the first backbone of ``names`` with weights."""
    transfer = next((m for m in models if m.key.kind == "transfer"), None)
    source = (transfer or models[0]).result
    manifest = datasets.read_manifest(Path(source["data"]["manifest"]))
    found = backbones.feature_source(transfer.result if transfer else None, names)
    return ood_reference(manifest, found.backbone, found.weights, found.size, found.policy)


@dataclass
class LungField:
    """Where the overlays' lungs come from: a lung segmentation model (None: the fixed rectangle
    of :func:`cxr_utils.analysis.saliency.central_lung_mask` for every image), said in words."""

    model: object | None
    description: str

    def masks(self, grays: list[np.ndarray]) -> tuple[list[np.ndarray | None], list[str]]:
        """Per image: its U-Net mask at the model's input size (None where the rectangle stands
        in) and what was used ("U-Net", or "fixed rectangle" and why)."""
        if self.model is None:
            return [None] * len(grays), [f"{RECTANGLE} (no lung model)"] * len(grays)
        side = int(self.model.input_shape[1])
        found = lungs.lung_masks(self.model, np.stack([resize_gray8(g, side) for g in grays]))
        used = [f"{RECTANGLE} (U-Net mask flagged: {r})" if r else "U-Net" for r in found.reasons]
        return [None if r else m for m, r in zip(found.masks, found.reasons)], used


def lung_field(
    out: str | Path | None = None, shortcuts_run: str = "shortcuts", profile: str | None = None
) -> LungField:
    """The lung field of a build, without training anything: the lung model the shortcut run used
    (its ``result.json``), else the one cached for the build's ``profile`` under the output
    root's cache, else the fixed rectangle (and why)."""
    root = Path(out) if out else config.output_root()
    recorded = (results.read_result(registry.SHORTCUTS.run_folder(shortcuts_run, root)) or {}).get(
        "lung_segmentation"
    ) or {}
    path = Path(recorded["model"]) if recorded.get("model") else None
    how = f"the lung U-Net the shortcut run '{shortcuts_run}' used"
    if path is None or not path.is_file():
        path, how = None, f"the lung U-Net cached for profile '{profile}'"
        if profile:
            try:
                path = lungs.cached(root / "cache", lungs.profile_settings(profile))
            except config.ConfigError:
                path = None
    if path is None:
        return LungField(
            None,
            f"the {RECTANGLE} (rows 20-85 %, columns 15-85 % of the image): no lung model cached under "
            f"{root / 'cache' / lungs.CACHE_FOLDER} (`python -m cxr_utils lungs` or `make report` trains one)",
        )
    return LungField(lungs.load_model(path), f"{how} ({path.name}); the {RECTANGLE} where its mask is flagged")


def predict(
    inputs: list[str | Path],
    models: list[Model],
    reference: OODReference | None,
    out: str | Path,
    saliency_maps: bool = True,
    lung: LungField | None = None,
) -> pd.DataFrame:
    """Score every image with every model; write ``predictions.csv``, one saliency overlay per
    image and model under ``saliency/`` (the lungs outlined: ``lung``'s masks, or the fixed
    rectangle when it is None), and ``contact_sheet.png`` into ``out``."""
    out = Path(out)
    (out / "saliency").mkdir(parents=True, exist_ok=True)
    loaded = [load_image(path) for path in image_files(inputs)]
    good = [item for item in loaded if item.gray is not None]
    ood = _ood_scores(good, reference)
    rows = [{"path": str(item.path), "error": item.error} for item in loaded if item.gray is None]
    lung = lung or LungField(None, f"the {RECTANGLE} (no lung model given)")
    found, used = lung.masks([item.gray for item in good]) if saliency_maps and good else ([], [])
    for model in models if good else []:
        batch = np.stack([resize_gray8(item.gray, model.size) for item in good])
        probabilities = training.predict(model.model, saliency.model_images(model.model, batch))
        heat = saliency.gradcam(model.model, batch.astype("float32")) if saliency_maps else None
        for k, item in enumerate(good):
            saved, share, mask_used = "", np.nan, ""
            if heat is not None:
                mask = (
                    saliency.central_lung_mask(model.size)
                    if found[k] is None
                    else lungs.resize_mask(found[k], model.size)
                )
                share, mask_used = float(saliency.mass_share(heat[k], mask)[0]), used[k]
                saved = str(out / "saliency" / f"{k:03d}_{item.path.stem}_{model.key.kind}.png")
                _save_png(saliency.outline(saliency.overlay(batch[k], heat[k]), mask), saved)
            score, flag = ood.get(item.path, (np.nan, False))
            rows.append(
                {
                    "path": str(item.path),
                    "model": str(model.key),
                    "run": model.key.run,
                    "probability": float(probabilities[k]),
                    "threshold": model.threshold,
                    "decision": "COVID-19" if probabilities[k] >= model.threshold else "not COVID-19",
                    "ood_flag": bool(flag or item.colour),
                    "ood_score": score,
                    "ood_threshold": reference.threshold if reference else np.nan,
                    "note": "; ".join(item.notes),
                    "error": "",
                    "saliency": saved,
                    "lung_share": share,
                    "lung_mask": mask_used,
                }
            )
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.to_csv(out / "predictions.csv", index=False)
    if len(table[table["error"] == ""]):
        contact_sheet(table[table["error"] == ""], out / "contact_sheet.png")
    return table


def _ood_scores(good: list[Loaded], reference: OODReference | None) -> dict[Path, tuple[float, bool]]:
    if reference is None or not good:
        return {}
    from .modeling.precision import apply_recorded

    apply_recorded(reference.policy, "as the reference features were made")
    extractor = backbones.build_extractor(reference.backbone, reference.weights, reference.size)
    batch = np.stack([resize_gray8(item.gray, reference.size) for item in good])
    vectors = features.extract(extractor, batch, [f"input-{k}" for k in range(len(good))], cache=None).features
    scores = reference.scores(vectors)
    return {item.path: (float(s), bool(s > reference.threshold)) for item, s in zip(good, scores)}


def _save_png(rgb: np.ndarray, path: str | Path) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path)


def contact_sheet(table: pd.DataFrame, path: str | Path) -> Path:
    """One tile per image and model: the saliency overlay with probability, decision and OOD flag."""
    import matplotlib.pyplot as plt
    from PIL import Image

    rows = table[table["saliency"] != ""]
    cols = min(6, max(len(rows), 1))
    lines = -(-max(len(rows), 1) // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(2.2 * cols, 2.5 * lines), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows.itertuples()):
        ax.imshow(Image.open(row.saliency))
        flag = " OOD!" if row.ood_flag else ""
        where = "U-Net" if row.lung_mask == "U-Net" else "rectangle"
        ax.set_title(
            f"{Path(row.path).name[:22]}\n{row.model}: {row.probability:.2f} ({row.decision}){flag}\n"
            f"Grad-CAM in lungs ({where}): {row.lung_share:.0%}",
            fontsize=6,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def caveat(out: str | Path | None = None, shortcuts_run: str = "shortcuts") -> str:
    """The fixed caveat, with the build's shortcut finding in one sentence (the verdict's
    conclusion, its last line) where it exists."""
    shortcuts = results.read_result(registry.SHORTCUTS.run_folder(shortcuts_run, out)) or {}
    finding = shortcuts.get("verdict", ["The shortcut analysis was not run in this build."])[-1]
    return CAVEAT.format(finding=finding, report=registry.REPORT_DIR / "report.html#5.-What-is-the-model-looking-at?")


def write_provenance(
    models: list[Model], reference: OODReference | None, out: str | Path, note: str, lung: LungField | None = None
) -> Path:
    """``provenance.json`` beside the predictions: each model's run, commit, profile and training
    data, the OOD reference, the lung field of the overlays, and the caveat."""
    target = Path(out) / "provenance.json"
    target.write_text(
        json.dumps(
            {
                "models": [m.provenance() for m in models],
                "ood": None
                if reference is None
                else {
                    "backbone": reference.backbone,
                    "size": reference.size,
                    "threshold": reference.threshold,
                    "percentile of val": OOD_PERCENTILE,
                    "neighbours": reference.neighbours,
                },
                "lung_field": (lung or LungField(None, f"the {RECTANGLE} (no lung model given)")).description,
                "caveat": note,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    return target
