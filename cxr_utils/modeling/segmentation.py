"""A small U-Net for lung fields: the model, its loss and Dice metric, the tf.data input and the fit.

Grey images 0-255 go in (rescaled inside the model), a per-pixel probability of "lung" comes out.
Always built in float32 whatever Keras' global policy is, so a cached model does not depend on the
machine that trained it. Training reuses :func:`cxr_utils.modeling.training.fit` (the best epoch by
held-back Dice is kept).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .. import config
from .training import Training, fit, seed_everything

MONITOR = "val_dice"


@dataclass(frozen=True)
class UNetSettings:
    """Everything that decides the trained model (hashed into the cache key)."""

    size: int = 128  # input side, pixels
    filters: tuple[int, ...] = (8, 16, 32, 64)  # per level; the last is the bottleneck
    epochs: int = 8  # the cap; the learning rate decays to 0 over it (cosine)
    patience: int = 3  # epochs without a better held-back Dice before stopping
    batch_size: int = 16
    learning_rate: float = 3e-3  # at the start
    held_back: float = 0.15  # share of the images (per source) kept out of training
    augment: bool = True  # small shifts, zooms and contrast changes
    seed: int = 0

    def as_dict(self) -> dict:
        return {**asdict(self), "filters": list(self.filters)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> UNetSettings:
        """Settings from a mapping (a profile's or a notebook parameter's ``lung_unet``); keys it
        leaves out keep their defaults. An unknown key or a value of the wrong kind is a
        :class:`~cxr_utils.config.ConfigError` naming it."""
        values = dict(values or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise config.ConfigError(f"lung U-Net settings: unknown keys {unknown} (known: {', '.join(known)})")
        problems = []
        for key, value in values.items():
            default = known[key].default
            if key == "filters":
                good = isinstance(value, (list, tuple)) and len(value) >= 2 and all(_whole(v) and v > 0 for v in value)
            elif isinstance(default, bool):
                good = isinstance(value, bool)
            elif isinstance(default, int):
                good = _whole(value) and value >= (0 if key == "seed" else 1)
            else:  # the learning rate and the held-back share
                good = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
                good = good and (key != "held_back" or value < 1)
            if not good:
                problems.append(f"{key} = {value!r}")
        if problems:
            raise config.ConfigError(f"lung U-Net settings: impossible values {', '.join(problems)}")
        if "filters" in values:
            values["filters"] = tuple(int(v) for v in values["filters"])
        settings = cls(**values)
        step = 2 ** (len(settings.filters) - 1)
        if settings.size % step:
            raise config.ConfigError(
                f"lung U-Net settings: size {settings.size} must be divisible by {step} "
                f"for {len(settings.filters)} levels"
            )
        return settings


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@contextlib.contextmanager
def float32_policy() -> Iterator[None]:
    """Keras' global dtype policy set to float32 inside the block, restored after it."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def _block(x, filters: int, name: str):
    import keras

    for k in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{k}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{k}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{k}")(x)
    return x


def build_unet(size: int = 128, filters: Sequence[int] = (8, 16, 32, 64), name: str = "lung_unet"):
    """A U-Net with ``len(filters) - 1`` down/up steps: (size, size, 1) grey 0-255 in, P(lung) out."""
    import keras

    if size % 2 ** (len(filters) - 1):
        raise ValueError(f"size {size} must be divisible by {2 ** (len(filters) - 1)} for {len(filters)} levels")
    with float32_policy():
        inputs = keras.Input((size, size, 1), name="image")
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
        skips = []
        for level, width in enumerate(filters[:-1]):
            x = _block(x, width, f"down{level}")
            skips.append(x)
            x = keras.layers.MaxPooling2D(name=f"pool{level}")(x)
        x = _block(x, filters[-1], "bottom")
        for level in reversed(range(len(filters) - 1)):
            x = keras.layers.Conv2DTranspose(filters[level], 2, strides=2, name=f"up{level}")(x)
            x = keras.layers.Concatenate(name=f"skip{level}")([x, skips[level]])
            x = _block(x, filters[level], f"dec{level}")
        outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="lung")(x)
        return keras.Model(inputs, outputs, name=name)


def _per_image_dice(y_true, y_pred, hard: bool):
    import keras.ops as ops

    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(ops.greater_equal(y_pred, 0.5), "float32") if hard else ops.cast(y_pred, "float32")
    inter = ops.sum(y_true * y_pred, axis=(1, 2, 3))
    total = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))
    return (2.0 * inter + 1.0) / (total + 1.0)


def dice_bce(y_true, y_pred):
    """Loss per image: binary cross-entropy plus 1 - soft Dice."""
    import keras

    bce = keras.ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
    return bce + 1.0 - _per_image_dice(y_true, y_pred, hard=False)


def hard_dice(y_true, y_pred):
    """Dice per image of the mask thresholded at 0.5 (1 when both are empty)."""
    return _per_image_dice(y_true, y_pred, hard=True)


def compile_unet(model, learning_rate: float, decay_steps: int | None = None) -> None:
    """Adam (its rate decaying to 0 over ``decay_steps`` by a cosine, when given), Dice + BCE loss,
    and the thresholded Dice as metric ``dice`` (``val_dice`` on the held-back images)."""
    import keras

    rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps) if decay_steps else learning_rate
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=rate),
        loss=dice_bce,
        metrics=[keras.metrics.MeanMetricWrapper(hard_dice, name="dice")],
    )


def _augmenter(seed: int):
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed),
            keras.layers.RandomZoom((-0.1, 0.1), fill_mode="constant", seed=seed + 1),
            keras.layers.RandomRotation(0.02, fill_mode="constant", seed=seed + 2),
        ],
        name="augment",
    )


def mask_dataset(
    images: np.ndarray, masks: np.ndarray, batch_size: int, shuffle_seed: int | None = None, augment: bool = False
):
    """Batched tf.data of (grey 0-255 (N, S, S, 1) float32, mask 0/1 (N, S, S, 1) float32). With
    ``augment`` the same random shift, zoom and small rotation moves image and mask together, and
    the image's contrast and brightness vary a little."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images[..., None].astype(np.float32), masks[..., None].astype(np.float32)))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment:
        seed = 0 if shuffle_seed is None else shuffle_seed
        moves = _augmenter(seed)

        def jitter(x, y):
            both = moves(tf.concat([x, y], axis=-1), training=True)
            x, y = both[..., :1], tf.cast(both[..., 1:] >= 0.5, tf.float32)
            n = tf.shape(x)[0]
            gain = tf.random.uniform((n, 1, 1, 1), 0.8, 1.2)
            shift = tf.random.uniform((n, 1, 1, 1), -20.0, 20.0)
            mean = tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
            return tf.clip_by_value((x - mean) * gain + mean + shift, 0.0, 255.0), y

        ds = ds.map(jitter, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def train_unet(
    train: tuple[np.ndarray, np.ndarray],
    held_back: tuple[np.ndarray, np.ndarray],
    settings: UNetSettings,
    folder: Path,
    verbose: int = 0,
) -> tuple[object, Training]:
    """Fit a U-Net on (images uint8 (N, S, S), masks bool (N, S, S)) at ``settings.size``; keep the
    epoch with the best held-back Dice (``folder``: model.keras and history.csv)."""
    seed_everything(settings.seed)
    model = build_unet(settings.size, settings.filters)
    steps = -(-len(train[0]) // settings.batch_size) * settings.epochs
    compile_unet(model, settings.learning_rate, steps)
    train_ds = mask_dataset(*train, settings.batch_size, shuffle_seed=settings.seed, augment=settings.augment)
    val_ds = mask_dataset(*held_back, settings.batch_size)
    with float32_policy():
        outcome = fit(
            model,
            train_ds,
            val_ds,
            epochs=settings.epochs,
            folder=folder,
            monitor=MONITOR,
            verbose=verbose,
            patience=settings.patience,
        )
    return model, outcome


def load_unet(path: Path):
    """A saved U-Net for prediction (not compiled: no custom loss needed), float32 whatever the global policy."""
    import keras

    with float32_policy():
        return keras.models.load_model(path, compile=False)
