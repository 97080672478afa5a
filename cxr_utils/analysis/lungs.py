"""Each image's own lungs: a lung-field segmentation model, trained once and cached, measured on an
independent set, and its masks (with a flag where a mask is implausible).

Training set: Montgomery/Shenzhen (704 radiographs with manual lung masks, one image per patient,
so an image is its own group); a seeded share of each of the two sources is held back to choose the
epoch and to measure. Independent test set: JSRT with SCR labels (lungs = labels 150 and 200; the
heart, 250, is not lung). Neither set has COVID-19, AP portable or paediatric films: where the model
fails on those, :func:`lung_masks` flags the mask (its area or shape is not that of two lungs) and
:func:`mask_panel` shows it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from .. import config, registry
from ..data import datasets
from ..data.images import load_gray8, resize_gray8
from ..modeling.segmentation import UNetSettings, load_unet, train_unet
from .evaluation import group_resample
from .saliency import central_lung_mask

MASK_SETS = "lung-masks"  # under the data root
TRAIN_SET = "montgomery-shenzhen"
TEST_SET = "jsrt"
JSRT_LUNG_LABELS = (150, 200)  # right and left lung; 250 is the heart
KEY_VERSION = 1  # bump when the training code changes what a cached model is
CACHE_FOLDER = "lungs"
PARAMETER = "lung_unet"  # notebook 05's parameter holding the settings; profiles set it (notebooks.05_shortcuts.set)

# A plausible lung mask: between these shares of the image, and two main parts, one each side of
# the midline, the smaller at least SECOND_PART of the larger (after dropping specks under MIN_PART).
AREA_SHARE = (0.08, 0.70)
SECOND_PART = 0.25
MIN_PART = 0.01  # of the image area


class LungMaskError(config.ConfigError):
    """The lung-mask sets are missing or incomplete; the message names the folder."""


# --------------------------------------------------------------------------- the mask sets


@dataclass
class MaskSet:
    """Radiographs (N, S, S) uint8 with their lung masks (N, S, S) bool, one name per image."""

    names: list[str]
    images: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, keep: np.ndarray) -> MaskSet:
        keep = np.asarray(keep, dtype=bool)
        return MaskSet([n for n, k in zip(self.names, keep) if k], self.images[keep], self.masks[keep])

    @property
    def groups(self) -> np.ndarray:
        """One group per image (both sets hold one radiograph per patient)."""
        return np.asarray(self.names)


def mask_folder(which: str, root: str | os.PathLike | None = None) -> Path:
    """``<data root>/lung-masks/<which>``, with ``images/`` and ``masks/``; an error names what is missing."""
    folder = config.data_root(root) / MASK_SETS / which
    for part in ("images", "masks"):
        if not (folder / part).is_dir() or not any((folder / part).glob("*.png")):
            raise LungMaskError(
                f"lung-mask set {folder / part} is missing or holds no PNG files: the lung segmentation needs "
                f"{MASK_SETS}/{TRAIN_SET} and {MASK_SETS}/{TEST_SET} under the data root (see {MASK_SETS}/README.md)"
            )
    return folder


def file_list(folder: Path) -> list[tuple[str, int]]:
    """(path relative to ``folder``, bytes) of every image and mask: what the cache key hashes."""
    files = sorted(p for part in ("images", "masks") for p in (folder / part).glob("*.png"))
    return [(p.relative_to(folder).as_posix(), p.stat().st_size) for p in files]


def jsrt_lungs(labels: np.ndarray) -> np.ndarray:
    """Lung mask (bool) of a JSRT/SCR label image: right (150) and left (200) lung; heart and background out."""
    return np.isin(np.asarray(labels), JSRT_LUNG_LABELS)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A boolean mask resized to ``size`` x ``size`` (bilinear, then thresholded at 0.5)."""
    if mask.shape == (size, size):
        return mask
    soft = Image.fromarray(mask.astype(np.float32)).resize((size, size), Image.BILINEAR)
    return np.asarray(soft) >= 0.5


def read_mask_set(
    which: str, root: str | os.PathLike | None = None, size: int | None = None, only: Sequence[str] | None = None
) -> MaskSet:
    """A lung-mask set (``TRAIN_SET`` or ``TEST_SET``), images and masks resized to ``size`` when given,
    only the images named in ``only`` when given. Every image needs a mask of the same name and shape."""
    folder = mask_folder(which, root)
    wanted = None if only is None else set(only)
    names = sorted(p.name for p in (folder / "images").glob("*.png") if wanted is None or p.name in wanted)
    images, masks = [], []
    for name in names:
        mask_file = folder / "masks" / name
        if not mask_file.is_file():
            raise LungMaskError(f"{folder / 'images' / name} has no mask {mask_file}")
        image, labels = load_gray8(folder / "images" / name), load_gray8(mask_file)
        if image.shape != labels.shape:
            raise LungMaskError(f"{name}: image {image.shape} and mask {labels.shape} differ in shape ({folder})")
        mask = jsrt_lungs(labels) if which == TEST_SET else labels >= 128
        if size is not None:
            image, mask = resize_gray8(image, size), resize_mask(mask, size)
        images.append(image)
        masks.append(mask)
    return MaskSet(names, np.stack(images), np.stack(masks))


def held_back_split(names: Sequence[str], share: float, seed: int) -> np.ndarray:
    """Bool (N,): True for the held-back images, a seeded ``share`` of each source (the file name's
    prefix before the first ``_``: MCUCXR Montgomery, CHNCXR Shenzhen), image by image."""
    if not 0 < share < 1:
        raise ValueError(f"held-back share {share} must be between 0 and 1")
    names = list(names)
    prefixes = np.array([n.split("_", 1)[0] for n in names])
    held = np.zeros(len(names), dtype=bool)
    rng = np.random.default_rng(seed)
    for prefix in sorted(set(prefixes)):
        members = np.flatnonzero(prefixes == prefix)
        count = max(1, round(share * len(members)))
        held[rng.choice(members, size=count, replace=False)] = True
    return held


# --------------------------------------------------------------------------- overlap measures


def _overlap(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"masks of different shapes: {pred.shape} and {truth.shape}")
    axes = tuple(range(pred.ndim - 2, pred.ndim))
    inter = (pred & truth).sum(axis=axes)
    return inter, pred.sum(axis=axes), truth.sum(axis=axes)


def dice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray | float:
    """2|A∩B| / (|A| + |B|) per image, over the last two axes (1 when both are empty)."""
    inter, a, b = _overlap(pred, truth)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(a + b > 0, 2.0 * inter / np.maximum(a + b, 1), 1.0)
    return float(out) if out.ndim == 0 else out


def iou(pred: np.ndarray, truth: np.ndarray) -> np.ndarray | float:
    """|A∩B| / |A∪B| per image, over the last two axes (1 when both are empty)."""
    inter, a, b = _overlap(pred, truth)
    union = a + b - inter
    out = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(out) if out.ndim == 0 else out


def bootstrap_mean(
    values: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, float]:
    """Mean of per-image values with its (1 - alpha) percentile interval over group resamples."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return {"value": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    draws = [values[group_resample(groups, rng)].mean() for _ in range(n_boot)]
    low, high = np.percentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"value": float(values.mean()), "low": float(low), "high": float(high), "n": int(len(values))}


# --------------------------------------------------------------------------- masks of any image


@dataclass
class LungMasks:
    """Masks (N, S, S) bool at the caller's size; ``flagged`` (N,) where a mask is implausible,
    ``reasons`` saying why ('' where plausible); ``area_share`` of the image inside the mask."""

    masks: np.ndarray
    flagged: np.ndarray
    reasons: list[str]
    area_share: np.ndarray


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Holes filled and specks (parts under ``MIN_PART`` of the image) dropped."""
    labels, count = ndimage.label(mask)
    if count:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
        keep = np.flatnonzero(sizes >= MIN_PART * mask.size) + 1
        mask = np.isin(labels, keep)
    return ndimage.binary_fill_holes(mask)


def implausible(mask: np.ndarray) -> str:
    """Why a lung mask (S, S) is not that of two lungs on a frontal radiograph, or '' if it is:
    its area outside ``AREA_SHARE`` of the image, fewer than two parts, the second part under
    ``SECOND_PART`` of the first, or both main parts on one side of the midline."""
    mask = np.asarray(mask, dtype=bool)
    share = mask.mean()
    if not AREA_SHARE[0] <= share <= AREA_SHARE[1]:
        return f"area {share:.0%} (plausible {AREA_SHARE[0]:.0%}-{AREA_SHARE[1]:.0%})"
    labels, count = ndimage.label(mask)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    order = np.argsort(sizes)[::-1]
    if count < 2 or sizes[order[1]] < SECOND_PART * sizes[order[0]]:
        return "one main part"
    cols = [ndimage.center_of_mass(labels == k + 1)[1] for k in order[:2]]
    middle = (mask.shape[1] - 1) / 2
    if (cols[0] - middle) * (cols[1] - middle) >= 0:
        return "parts on one side"
    return ""


def _resize_probability(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if prob.shape == shape:
        return prob
    return np.asarray(Image.fromarray(prob.astype(np.float32)).resize(shape[::-1], Image.BILINEAR))


def lung_probabilities(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """P(lung) (N, s, s) at the model's input size ``s`` for grey uint8 images (N, H, W) (squashed to square)."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"grey images (N, H, W) needed; got shape {images.shape}")
    side = int(model.input_shape[1])
    resized = (
        np.stack([resize_gray8(np.asarray(im, dtype=np.uint8), side) for im in images])
        if len(images)
        else (np.zeros((0, side, side), np.uint8))
    )
    out = [
        np.asarray(model.predict_on_batch(resized[k : k + batch_size, ..., None].astype(np.float32)))[..., 0]
        for k in range(0, len(resized), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, side, side), np.float32)


def lung_masks(model, images: np.ndarray, size: int | None = None, batch_size: int = 32) -> LungMasks:
    """Each image's lung mask at ``size`` x ``size`` (default: the images' own H x W), from P(lung)
    resized back and thresholded at 0.5, holes filled and specks dropped; implausible masks flagged
    (:func:`implausible`: a non-chest image gets a flag, and its mask should not be used)."""
    images = np.asarray(images)
    shape = (size, size) if size else tuple(images.shape[1:3])
    prob = lung_probabilities(model, images, batch_size)
    masks = (
        np.stack([clean_mask(_resize_probability(p, shape) >= 0.5) for p in prob])
        if len(prob)
        else (np.zeros((0, *shape), bool))
    )
    reasons = [implausible(m) for m in masks]
    return LungMasks(masks, np.array([bool(r) for r in reasons]), reasons, masks.mean(axis=(1, 2)))


# --------------------------------------------------------------------------- measuring


def evaluate(
    model, data: MaskSet, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[dict[str, dict[str, float]], pd.DataFrame]:
    """Dice and IoU (mean over images, with a bootstrap interval over images) of the model's masks
    at the set's own resolution, and the share flagged; and the per-image table."""
    found = lung_masks(model, data.images)
    table = pd.DataFrame(
        {
            "name": data.names,
            "dice": dice(found.masks, data.masks),
            "iou": iou(found.masks, data.masks),
            "flagged": found.flagged,
            "reason": found.reasons,
        }
    )
    summary = {m: bootstrap_mean(table[m].to_numpy(), data.groups, n_boot, seed, alpha) for m in ("dice", "iou")}
    summary["flagged"] = {"value": float(table["flagged"].mean()), "count": int(table["flagged"].sum())}
    return summary, table


# --------------------------------------------------------------------------- trained once, cached


def cache_key(settings: UNetSettings, files: Sequence[tuple[str, int]]) -> str:
    """16 hex digits hashing the training settings, the training files (names, bytes) and ``KEY_VERSION``."""
    payload = json.dumps(
        {"version": KEY_VERSION, "settings": settings.as_dict(), "files": [list(f) for f in files]}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cached_model_path(cache_root: Path, key: str) -> Path:
    """``<cache root>/lungs/<key>.keras`` (its record: the same name with ``.json``)."""
    return Path(cache_root) / CACHE_FOLDER / f"{key}.keras"


def _write_atomically(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def provision(
    cache_root: str | os.PathLike | None = None,
    settings: UNetSettings | None = None,
    root: str | os.PathLike | None = None,
    verbose: int = 0,
) -> Path:
    """The cached lung model for these settings and training files, trained first if not there
    (under a lock: a second process waits and reuses it). Written atomically: a model file that
    exists is complete, with its record (``.json``: settings, held-back images, time, epochs, CPU)."""
    import filelock

    settings = settings or UNetSettings()
    folder = mask_folder(TRAIN_SET, root)
    mask_folder(TEST_SET, root)  # the measure needs it too: fail before training, not after
    key = cache_key(settings, file_list(folder))
    target = cached_model_path(Path(cache_root) if cache_root else config.cache_dir(), key)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(target.with_suffix(".lock")):
        if target.is_file():
            return target
        started = time.perf_counter()
        data = read_mask_set(TRAIN_SET, root, settings.size)
        held = held_back_split(data.names, settings.held_back, settings.seed)
        read_seconds = time.perf_counter() - started
        work = target.with_name(f".{key}.{os.getpid()}.work")
        try:
            train, back = data.subset(~held), data.subset(held)
            _, outcome = train_unet((train.images, train.masks), (back.images, back.masks), settings, work, verbose)
            cpu, flags = config.cpu_description()
            record = {
                "key": key,
                "settings": settings.as_dict(),
                "train_images": len(train),
                "held_back": back.names,
                "read_seconds": round(read_seconds, 2),
                "train_seconds": round(outcome.seconds, 2),
                "epochs_run": len(outcome.history),
                "best_epoch": outcome.best_epoch,
                "stopped_by": outcome.stopped_by,
                "best_held_back_dice_at_size": outcome.best()["val_dice"],
                "history": outcome.history.round(5).to_dict(orient="list"),
                "cpu": cpu,
                "cpu_bf16_flags": sorted(f for f in flags if f in ("amx_bf16", "avx512_bf16")),
                "cores": len(os.sched_getaffinity(0)),
                "policy": "float32",
                "python": platform.python_version(),
            }
            _write_atomically(
                target.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n")
            )
            os.replace(work / "model.keras", target)  # last: its presence means the provision is complete
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def cached(
    cache_root: str | os.PathLike | None = None,
    settings: UNetSettings | None = None,
    root: str | os.PathLike | None = None,
) -> Path | None:
    """The cached lung model for these settings and training files if it is there, else None
    (never trains; None too where the mask sets are missing, since they make the key)."""
    try:
        folder = mask_folder(TRAIN_SET, root)
    except config.ConfigError:
        return None
    key = cache_key(settings or UNetSettings(), file_list(folder))
    target = cached_model_path(Path(cache_root) if cache_root else config.cache_dir(), key)
    return target if target.is_file() else None


def profile_settings(profile: str) -> UNetSettings:
    """The lung model's settings at a profile: notebook 05's ``lung_unet`` parameter (its default:
    the smoke profile's tiny model) with the profile's rules for that notebook applied, as the
    notebook itself applies them. The main job provisions with these before notebook 05 runs."""
    default = config.notebook_parameters(registry.SHORTCUTS.stem)[PARAMETER].default
    effective, _ = config.apply_profile({PARAMETER: default}, profile, registry.SHORTCUTS.stem)
    return UNetSettings.from_dict(effective[PARAMETER])


def training_record(model_path: Path) -> dict:
    """The record written beside a cached model (see :func:`provision`)."""
    return json.loads(Path(model_path).with_suffix(".json").read_text())


def load_model(model_path: Path):
    """A cached lung model, ready for :func:`lung_masks`."""
    return load_unet(Path(model_path))


def measure(
    model_path: Path, root: str | os.PathLike | None = None, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict]:
    """Dice/IoU with intervals on JSRT (independent) and on the held-back Montgomery/Shenzhen
    images (at their 256 px), the fixed rectangle's on JSRT for comparison, and the training record."""
    record = training_record(model_path)
    model = load_model(model_path)
    held_back = read_mask_set(TRAIN_SET, root, only=record["held_back"])
    out = {}
    jsrt = read_mask_set(TEST_SET, root)
    for name, data in (("jsrt", jsrt), ("held_back", held_back)):
        started = time.perf_counter()
        summary, _ = evaluate(model, data, n_boot=n_boot, seed=seed)
        out[name] = {**summary, "seconds": round(time.perf_counter() - started, 2)}
    out["jsrt_rectangle"] = rectangle_scores(jsrt, n_boot=n_boot, seed=seed)
    out["training"] = {k: v for k, v in record.items() if k not in ("history", "held_back")}
    return out


def rectangle_scores(data: MaskSet, n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Dice and IoU (with intervals, as :func:`evaluate`) of the fixed rectangle of
    :func:`cxr_utils.analysis.saliency.central_lung_mask` as every image's lung mask."""
    rectangle = np.broadcast_to(central_lung_mask(data.images.shape[1]), data.masks.shape)
    return {
        "dice": bootstrap_mean(dice(rectangle, data.masks), data.groups, n_boot, seed),
        "iou": bootstrap_mean(iou(rectangle, data.masks), data.groups, n_boot, seed),
        "flagged": {"value": 0.0, "count": 0},
    }


def measure_table(measured: Mapping[str, dict]) -> pd.DataFrame:
    """:func:`measure`'s result as a table, one row per set (JSRT, held-back, and the fixed
    rectangle on JSRT): images, Dice and IoU with their intervals, and the masks flagged as
    implausible (none for the rectangle: it is never checked)."""
    names = {
        "jsrt": "JSRT (independent)",
        "held_back": "held-back Montgomery/Shenzhen",
        "jsrt_rectangle": "JSRT, the fixed rectangle",
    }
    return pd.DataFrame(
        [
            {
                "set": label,
                "n": measured[name]["dice"]["n"],
                **{
                    f"{metric}{suffix}": measured[name][metric][part]
                    for metric in ("dice", "iou")
                    for suffix, part in (("", "value"), (" low", "low"), (" high", "high"))
                },
                "flagged": measured[name]["flagged"]["count"],
            }
            for name, label in names.items()
            if name in measured
        ]
    )


def measure_line(measured: Mapping[str, dict]) -> str:
    """Dice and IoU with their intervals and the flagged count, per set, in one line."""
    return "; ".join(
        f"{r['set']}, n={r['n']}: Dice {r['dice']:.3f} [{r['dice low']:.3f}, {r['dice high']:.3f}], "
        f"IoU {r['iou']:.3f} [{r['iou low']:.3f}, {r['iou high']:.3f}], {r['flagged']} flagged"
        for r in measure_table(measured).to_dict("records")
    )


# --------------------------------------------------------------------------- the lung field of the probes


class LungFields:
    """Each image's lung field, at any size, for analyses that hide or weigh "the lungs".

    The model's mask is made once per image (from the image file at the model's input size, via
    the image cache), then resized to the size asked for; where the mask is flagged
    (:func:`implausible`), or where there is no model, the fixed rectangle of
    :func:`cxr_utils.analysis.saliency.central_lung_mask` stands in. :meth:`images` lists what
    each image got.
    """

    def __init__(self, model, root: str | os.PathLike, reason_without_model: str = "no lung model"):
        self.model = model
        self.root = Path(root)
        self.reason_without_model = reason_without_model
        self._found: dict[str, tuple[np.ndarray | None, str]] = {}  # image_id -> (mask at model size, reason)
        self._source: dict[str, str] = {}

    def __call__(self, rows: pd.DataFrame, size: int) -> np.ndarray:
        """Boolean (N, size, size) for manifest rows (columns image_id, path, sha256, source), in order."""
        self.segment(rows)
        ids = rows["image_id"].astype(str).tolist()
        rectangle = central_lung_mask(size)
        out = [rectangle if self._found[i][1] else resize_mask(self._found[i][0], size) for i in ids]
        return np.stack(out) if out else np.zeros((0, size, size), bool)

    def segment(self, rows: pd.DataFrame) -> None:
        """Segment the images of these manifest rows not seen yet (each image once)."""
        rows = rows[~rows["image_id"].astype(str).isin(self._found)].drop_duplicates("image_id")
        if not len(rows):
            return
        self._source.update(zip(rows["image_id"].astype(str), rows["source"].astype(str)))
        if self.model is None:
            self._found.update((str(i), (None, self.reason_without_model)) for i in rows["image_id"])
            return
        side = int(self.model.input_shape[1])
        loaded = datasets.load_rows(rows, side, root=self.root)
        found = lung_masks(self.model, loaded.x)
        for image_id, mask, reason in zip(loaded.rows["image_id"].astype(str), found.masks, found.reasons):
            self._found[image_id] = (mask, reason)
        for bad in loaded.failures.itertuples():
            self._found[str(bad.image_id)] = (None, f"unreadable: {bad.reason}")

    def images(self) -> pd.DataFrame:
        """One row per image seen: image_id, source, mask ("U-Net" or "rectangle"), reason, and
        the share of the image inside its mask at the model's size (NaN for the rectangle)."""
        return pd.DataFrame(
            [
                {
                    "image_id": image_id,
                    "source": self._source.get(image_id, ""),
                    "mask": "rectangle" if reason else "U-Net",
                    "reason": reason,
                    "area share": float(mask.mean()) if mask is not None and not reason else np.nan,
                }
                for image_id, (mask, reason) in self._found.items()
            ],
            columns=["image_id", "source", "mask", "reason", "area share"],
        )

    def flagged(self) -> pd.DataFrame:
        """Per source: the images seen, how many got the rectangle because their mask was
        flagged (and the share), the reasons by kind, and the U-Net masks' mean area share."""
        seen = self.images()
        rows = []
        for source, part in seen.groupby("source", sort=True):
            kinds = part.loc[part["reason"] != "", "reason"].map(reason_kind).value_counts()
            rows.append(
                {
                    "source": source,
                    "images": len(part),
                    "flagged": int((part["reason"] != "").sum()),
                    "flagged share": float((part["reason"] != "").mean()),
                    "reasons": "; ".join(f"{kind}: {count}" for kind, count in kinds.items()),
                    "lung area share": float(part["area share"].mean()) if part["area share"].notna().any() else np.nan,
                }
            )
        return pd.DataFrame(
            rows, columns=["source", "images", "flagged", "flagged share", "reasons", "lung area share"]
        )


def reason_kind(reason: str) -> str:
    """A flag's reason without its numbers ("area 5% (plausible 8%-70%)" -> "area")."""
    return "area" if reason.startswith("area") else reason


# --------------------------------------------------------------------------- looking at it


def panel_images(
    manifest: pd.DataFrame, root: str | os.PathLike, per_source: int = 4, seed: int = 0, size: int = 256
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """A few images of every source in a manifest (columns source, path, and view and label when there;
    paths under ``root``), AP views (portable films) first where the source has them:
    source -> [(caption "<label> <view>", grey (S, S))]."""
    chosen: dict[str, list[tuple[str, np.ndarray]]] = {}
    for source, rows in manifest.groupby("source", sort=True):
        rows = rows.sample(frac=1.0, random_state=seed)
        view = rows["view"].fillna("").astype(str) if "view" in rows else pd.Series("", index=rows.index)
        ap = view.str.upper().str.startswith("AP")
        rows = pd.concat([rows[ap].head((per_source + 1) // 2), rows[~ap]]).head(per_source)
        chosen[str(source)] = [
            (_caption(row), resize_gray8(load_gray8(Path(root) / row["path"]), size)) for _, row in rows.iterrows()
        ]
    return chosen


def _caption(row: pd.Series) -> str:
    """``<label> <view>`` of a manifest row, what it has of them."""
    parts = [row.get(k) for k in ("label", "view")]
    return " ".join(str(p) for p in parts if isinstance(p, str) and p) or "view ?"


FIGURE_WIDTH = 7.4  # inches, at most
FONT_PT = 8


def mask_panel(model, images: Mapping[str, Sequence[tuple[str, np.ndarray]]], path: str | os.PathLike | None = None):
    """One row per source, its images with the model's lung mask outlined (yellow), captioned with
    the caption given and the lung area share, or FLAGGED and why. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    if not images or not any(images.values()):
        raise ValueError("nothing to draw: no images given")
    cols = max(len(v) for v in images.values())
    tile = min(1.7, (FIGURE_WIDTH - 0.3) / cols)
    fig, axes = plt.subplots(len(images), cols, figsize=(0.3 + tile * cols, len(images) * (tile + 0.45)), squeeze=False)
    for row, (source, items) in enumerate(images.items()):
        found = lung_masks(model, np.stack([im for _, im in items])) if items else None
        for col in range(cols):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(items):
                ax.axis("off")
                continue
            caption, image = items[col]
            mask = found.masks[col]
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            if mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors="yellow", linewidths=1.0)
            note = f"FLAGGED: {found.reasons[col]}" if found.flagged[col] else f"lungs {found.area_share[col]:.0%}"
            ax.set_title(
                f"{caption}\n{note}", fontsize=FONT_PT, color="firebrick" if found.flagged[col] else "black", wrap=True
            )
            if col == 0:
                ax.set_ylabel(source, fontsize=FONT_PT + 1)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
