"""Frozen-backbone features, computed once per image and cached on disk; the study's head.

With the backbone frozen (and augmentation off, as in the study's transfer runs) a training
epoch only changes the head, so the backbone's output for each image never changes. The
study recomputed it for every image in every epoch; here it is computed once per (image hash,
backbone, weights hash, size) and the head trains on the cached vectors.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import config
from ..data import datasets
from ..data.datasets import one_hot_labels
from ..data.images import save_array
from .backbones import Weights


@dataclass
class FeatureSet:
    """Pooled features (N, F) float32 for a split's images, and how they were obtained."""

    features: np.ndarray
    computed: int  # images run through the backbone now
    reused: int  # images read from the cache
    seconds: float


def cache_folder(
    backbone: str, weights: Weights, size: int, policy: str = "float32", root: Path | None = None
) -> Path | None:
    """One folder per (backbone, weights file hash, size, precision policy); None for a
    random-init backbone, whose weights are not a fixed file and whose features must not be
    reused. Features computed in bfloat16 differ from float32 ones, so they are kept apart."""
    if weights.sha256 is None:
        return None
    suffix = "" if policy == "float32" else f"-{policy}"
    return (root or config.cache_dir() / "features") / f"{backbone}-{weights.sha256[:16]}-{size}px{suffix}"


def vector_path(cache: Path, sha256: str) -> Path:
    """Where the cached feature vector of the image with this file hash lives."""
    return cache / sha256[:2] / f"{sha256}.npy"


def extract(extractor, images: np.ndarray, hashes: list[str], cache: Path | None, batch_size: int = 32) -> FeatureSet:
    """Features for gray uint8 images (N, S, S), reading what the cache has and adding the rest
    (no cache: every image is computed)."""
    started = time.perf_counter()
    out: list[np.ndarray | None] = [None] * len(hashes)
    if cache is not None:
        for k, digest in enumerate(hashes):
            path = vector_path(cache, digest)
            if path.is_file():
                out[k] = np.load(path)
    todo = [k for k, vec in enumerate(out) if vec is None]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        batch = np.repeat(images[chunk][..., None], 3, axis=-1).astype(np.float32)
        vectors = np.asarray(extractor.predict_on_batch(batch), dtype=np.float32)
        for k, vec in zip(chunk, vectors):
            out[k] = vec
            if cache is not None:
                save_array(vector_path(cache, hashes[k]), vec)
    width = int(extractor.output_shape[-1])
    features = np.stack(out) if out else np.zeros((0, width), np.float32)
    return FeatureSet(features, len(todo), len(hashes) - len(todo), time.perf_counter() - started)


def extract_lazily(
    build_extractor: Callable[[], Any], images: np.ndarray, hashes: list[str], cache: Path | None
) -> FeatureSet:
    """:func:`extract`, building the extractor only when the cache lacks some image's features."""
    if cache is not None:
        paths = [vector_path(cache, digest) for digest in hashes]
        if paths and all(path.is_file() for path in paths):
            started = time.perf_counter()
            vectors = np.stack([np.load(path) for path in paths])
            return FeatureSet(vectors, 0, len(paths), time.perf_counter() - started)
    return extract(build_extractor(), images, hashes, cache)


def fill_cache(build_extractor: Callable[[], Any], manifest, size: int, cache: Path, *, root: Path) -> dict:
    """Add to ``cache`` the features of every readable image of every split of ``manifest`` (a
    manifest DataFrame) at ``size`` px that it lacks, building the extractor once, and only if
    some image needs it. Returns :func:`extraction_record` of the pass."""
    build_once = functools.cache(build_extractor)
    found = []
    for split in manifest["split"].drop_duplicates():
        arrays = datasets.load_split(manifest, split, size, root=root)
        if not len(arrays.y):
            continue  # no readable image: nothing to compute, no extractor to build
        found.append(extract_lazily(build_once, arrays.x, arrays.rows["sha256"].tolist(), cache))
    return extraction_record(found, cache)


def extraction_record(feature_sets: list[FeatureSet], cache: Path | None) -> dict:
    """What ``result.json`` records about a feature pass: seconds, images computed and reused, cache."""
    return {
        "seconds": sum(f.seconds for f in feature_sets),
        "computed": sum(f.computed for f in feature_sets),
        "reused": sum(f.reused for f in feature_sets),
        "cache": cache.name if cache else "none (random init is not cached)",
    }


def build_head(features: int, name: str = "head"):
    """The study's head on pooled features: Dense(2, softmax) (GAP is the backbone's pooling)."""
    import keras

    inputs = keras.Input((features,), name="features")
    outputs = keras.layers.Dense(2, activation="softmax", name="classes", dtype="float32")(inputs)
    return keras.Model(inputs, outputs, name=name)


def compile_head(model, learning_rate: float) -> None:
    """Adam and categorical cross-entropy over the two classes, as the study did."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )


def feature_dataset(features: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None = None):
    """A batched tf.data dataset of (features, one-hot labels)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((features, one_hot_labels(y)))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(features), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def end_to_end(extractor, head, name: str = "transfer_model"):
    """The frozen backbone and the trained head as one Keras model (images 0-255 in)."""
    import keras

    inputs = keras.Input(extractor.input_shape[1:], name="image")
    return keras.Model(inputs, head(extractor(inputs)), name=name)
