"""From the manifest to ``tf.data`` pipelines: subsets, cached arrays, in-graph augmentation.

Images are decoded and resized once per size into the shared cache (see
:func:`cxr_utils.data.images.load_resized`); a split is held in memory as uint8 and fed through
``tf.data`` (shuffle with the run's seed, batch, augment with Keras preprocessing layers on
training batches only, prefetch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config
from .images import ImageReadError, load_resized

# The study's ImageDataGenerator settings (rotation 40, shifts 0.2, shear 0.2, zoom 0.2, flip).
# Legacy Keras reads shear_range in *degrees*, so the study's 0.2 is a shear of tan(0.2 deg).
STUDY_AUGMENTATION = {
    "rotation_degrees": 40.0,
    "shift": 0.2,
    "shear_degrees": 0.2,
    "zoom": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}


@dataclass
class SplitArrays:
    """One split in memory: images (N, S, S) uint8, labels (N,) 1 = COVID, and their rows."""

    x: np.ndarray
    y: np.ndarray
    rows: pd.DataFrame
    failures: pd.DataFrame


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read ``manifest.csv``; a missing file says which command makes it."""
    path = Path(path)
    if not path.is_file():
        raise config.ConfigError(
            f"manifest {path} not found: run the data merge first: `python -m cxr_utils run "
            f"notebooks/01_data_merge.ipynb params/data/{path.parent.name}.yaml`"
        )
    return pd.read_csv(path, dtype={"patient_id": str, "group_id": str})


def subset(rows: pd.DataFrame, max_images: int | None, seed: int, balanced: bool) -> pd.DataFrame:
    """A seeded subset of at most ``max_images`` rows.

    ``balanced`` takes equal numbers per label (as far as the smaller label allows);
    otherwise the label proportions are kept. None keeps every row.
    """
    if max_images is None or len(rows) <= max_images:
        return rows
    labels = sorted(rows["label"].unique())
    if balanced:
        per_label = {lab: max_images // len(labels) for lab in labels}
    else:
        shares = rows["label"].value_counts(normalize=True)
        per_label = {lab: int(round(shares[lab] * max_images)) for lab in labels}
    picked = [
        rows[rows["label"] == lab].sample(min(n, int((rows["label"] == lab).sum())), random_state=seed)
        for lab, n in per_label.items()
    ]
    return pd.concat(picked).sort_values("image_id")


def load_split(
    manifest: pd.DataFrame,
    split: str,
    size: int,
    *,
    root: Path,
    max_images: int | None = None,
    balanced: bool = False,
    seed: int = 0,
    cache_root: Path | None = None,
) -> SplitArrays:
    """Load one split's images at ``size`` px from the cache; bad files are recorded, not fatal."""
    rows = subset(manifest[manifest["split"] == split], max_images, seed, balanced)
    return load_rows(rows, size, root=root, cache_root=cache_root)


def load_rows(rows: pd.DataFrame, size: int, *, root: Path, cache_root: Path | None = None) -> SplitArrays:
    """Load the images of some manifest rows at ``size`` px, in their order; an image that
    cannot be read is left out and listed in ``failures`` with the reason."""
    cache_root = cache_root or config.cache_dir() / "images"
    arrays, kept, failures = [], [], []
    for row in rows.itertuples():
        try:
            arrays.append(load_resized(Path(root) / row.path, row.sha256, size, cache_root))
            kept.append(row.Index)
        except ImageReadError as err:
            failures.append({"image_id": row.image_id, "path": row.path, "reason": err.reason, "detail": err.detail})
    x = np.stack(arrays) if arrays else np.zeros((0, size, size), np.uint8)
    kept_rows = rows.loc[kept].reset_index(drop=True)
    y = (kept_rows["label"] == "COVID").to_numpy(np.float32)
    return SplitArrays(x, y, kept_rows, pd.DataFrame(failures, columns=["image_id", "path", "reason", "detail"]))


def take(
    arrays: SplitArrays, max_images: int | None, seed: int, balanced: bool = True
) -> tuple[SplitArrays, np.ndarray]:
    """A seeded subset of an already loaded split (see :func:`subset`), and the positions taken."""
    rows = arrays.rows.reset_index(drop=True)
    kept = subset(rows, max_images, seed, balanced).index.to_numpy()
    picked = SplitArrays(arrays.x[kept], arrays.y[kept], rows.loc[kept].reset_index(drop=True), arrays.failures)
    return picked, kept


def augmentation_layers(seed: int, spec: dict | None = None):
    """The study's augmentation as one Keras preprocessing layer (for training batches)."""
    return _study_augmentation_class()(spec or STUDY_AUGMENTATION, seed=seed, name="study_augmentation")


def _study_augmentation_class():
    import keras
    import tensorflow as tf

    class StudyAugmentation(keras.layers.Layer):
        """Random rotation, shift, shear and zoom composed into one affine map (one resample),
        then a random horizontal flip: the legacy ImageDataGenerator's semantics, in-graph."""

        def __init__(self, spec: dict, seed: int, **kwargs):
            super().__init__(**kwargs)
            self.spec = dict(spec)
            self.seed_generator = keras.random.SeedGenerator(seed)

        def _uniform(self, n, bound):
            return keras.random.uniform((n,), -bound, bound, seed=self.seed_generator)

        def call(self, images, training=True):
            if not training:
                return images
            spec, shape = self.spec, tf.shape(images)
            n, h, w = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
            theta = self._uniform(n, math.radians(spec["rotation_degrees"]))
            tx, ty = self._uniform(n, spec["shift"]) * w, self._uniform(n, spec["shift"]) * h
            shear = self._uniform(n, math.radians(spec["shear_degrees"]))
            zx, zy = 1.0 + self._uniform(n, spec["zoom"]), 1.0 + self._uniform(n, spec["zoom"])
            zero, one = tf.zeros_like(theta), tf.ones_like(theta)

            def matrix(*rows):  # nine (n,) tensors -> (n, 3, 3)
                return tf.reshape(tf.stack(rows, axis=1), (-1, 3, 3))

            cx, cy = (w - 1.0) / 2.0 * one, (h - 1.0) / 2.0 * one
            # output pixel -> input pixel, about the image centre: C R T S Z C^-1
            chain = [
                matrix(one, zero, cx, zero, one, cy, zero, zero, one),
                matrix(tf.cos(theta), -tf.sin(theta), zero, tf.sin(theta), tf.cos(theta), zero, zero, zero, one),
                matrix(one, zero, tx, zero, one, ty, zero, zero, one),
                matrix(one, -tf.sin(shear), zero, zero, tf.cos(shear), zero, zero, zero, one),
                matrix(zx, zero, zero, zero, zy, zero, zero, zero, one),
                matrix(one, zero, -cx, zero, one, -cy, zero, zero, one),
            ]
            full = chain[0]
            for step in chain[1:]:
                full = tf.linalg.matmul(full, step)
            transform = tf.concat([tf.reshape(full, (-1, 9))[:, :6], tf.zeros((n, 2))], axis=1)
            out = keras.ops.image.affine_transform(
                images, transform, interpolation="bilinear", fill_mode=spec["fill_mode"]
            )
            if spec["horizontal_flip"]:
                flip = keras.random.uniform((n, 1, 1, 1), seed=self.seed_generator) < 0.5
                out = tf.where(flip, tf.reverse(out, axis=[2]), out)
            return out

        def get_config(self):
            return {**super().get_config(), "spec": self.spec}

    return StudyAugmentation


def one_hot_labels(y: np.ndarray) -> np.ndarray:
    """Labels 0/1 (1 = COVID) as two float columns [NONCOVID, COVID], for a softmax head."""
    return np.eye(2, dtype=np.float32)[np.asarray(y).astype(int)]


def make_dataset(
    arrays: SplitArrays,
    *,
    batch_size: int,
    channels: int = 3,
    shuffle_seed: int | None = None,
    augment=None,
    one_hot: bool = False,
):
    """A batched ``tf.data.Dataset`` of (float32 images 0-255 with ``channels``, labels).

    Labels are (N, 1) with 1 = COVID, or (N, 2) one-hot [NONCOVID, COVID] for a softmax head.
    """
    import tensorflow as tf

    if channels not in (1, 3):
        raise config.ConfigError(f"channels must be 1 or 3, got {channels}")
    labels = one_hot_labels(arrays.y) if one_hot else arrays.y[:, None]
    ds = tf.data.Dataset.from_tensor_slices((arrays.x[..., None], labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(arrays.x), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def to_float(images, labels):
        images = tf.cast(images, tf.float32)
        return (tf.repeat(images, channels, axis=-1) if channels == 3 else images), labels

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:  # sequential: batches draw the augmentation's random state in order
        ds = ds.map(lambda images, labels: (augment(images, training=True), labels))
    return ds.prefetch(tf.data.AUTOTUNE)
