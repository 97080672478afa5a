"""ImageNet backbones: a registry, a weights resolver with provenance, and a preprocessing layer.

Weights are looked for, in order: an explicit file; the weights folders (``CXR_WEIGHTS_DIR``,
then ``outputs/weights/``, then ``../shared/weights/`` when present); Keras' own cache
(``$KERAS_HOME/models`` or ``~/.keras/models``) under the standard file names; and, last,
Keras' normal download (which needs internet; off when ``CXR_OFFLINE`` is set, as in the tests).
When nothing is found the error names the backbone, every file and folder tried, and how to
provide the weights. A randomly initialised
backbone is used only when a run says ``weights: none``, and is then labelled "random init".
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config
from ..data.images import file_sha256
from .precision import recorded_policy

RANDOM_INIT = "random init"


@dataclass(frozen=True)
class Backbone:
    """One ImageNet backbone as ``keras.applications`` builds it (no top)."""

    name: str
    constructor: str  # attribute of keras.applications
    preprocess: str  # caffe | tf | torch | none (what its preprocess_input does)
    default_size: int
    min_size: int
    features: int  # width of the pooled feature vector
    weight_files: tuple[str, ...]  # standard no-top file names, preferred first
    kwargs: dict = field(default_factory=dict)
    sha256: dict = field(default_factory=dict)  # known file hashes, checked when loading


BACKBONES = {
    b.name: b
    for b in [
        Backbone("vgg16", "VGG16", "caffe", 224, 32, 512, ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",)),
        Backbone(
            "xception",
            "Xception",
            "tf",
            299,
            71,
            2048,
            ("xception_imagenet_notop.weights.h5", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        ),
        Backbone(
            "densenet169",
            "DenseNet169",
            "torch",
            224,
            32,
            1664,
            ("densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5",),
        ),
        Backbone(
            "inceptionv3",
            "InceptionV3",
            "tf",
            299,
            75,
            2048,
            ("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",),
        ),
        Backbone(
            "mobilenet025",
            "MobileNet",
            "tf",
            224,
            32,
            256,
            ("mobilenet_2_5_224_tf_no_top.h5",),
            {"alpha": 0.25},
            {"mobilenet_2_5_224_tf_no_top.h5": "dbdb03ee2a22fd895301636cd328b234bb3a9952358f436d82f46b81e0d5b0bf"},
        ),
        Backbone("mobilenet", "MobileNet", "tf", 224, 32, 1024, ("mobilenet_1_0_224_tf_no_top.h5",), {"alpha": 1.0}),
        Backbone(
            "mobilenetv2",
            "MobileNetV2",
            "tf",
            224,
            32,
            1280,
            ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",),
            {"alpha": 1.0},
        ),
        Backbone("efficientnetb0", "EfficientNetB0", "none", 224, 32, 1280, ("efficientnetb0_notop.h5",)),
    ]
}


class WeightsNotFound(config.ConfigError):
    """No weights file for a backbone; the message says where we looked and what to do,
    ``summary`` the first part alone."""

    def __init__(self, message: str, summary: str | None = None) -> None:
        super().__init__(message)
        self.summary = summary or message


class WeightsHashMismatch(config.ConfigError):
    """A weights file whose sha256 is not the one recorded for it."""


@dataclass(frozen=True)
class Weights:
    """Which weights a run used: enough to cite and to check them."""

    file: str | None
    sha256: str | None
    origin: str

    @property
    def label(self) -> str:
        """What every table and figure shows: "ImageNet" or "random init"."""
        return RANDOM_INIT if self.file is None else "ImageNet"

    def as_dict(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, "origin": self.origin, "label": self.label}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Weights:
        """The weights a ``result.json`` recorded (its ``weights`` entry, as :meth:`as_dict` wrote it)."""
        return cls(record["file"], record["sha256"], record["origin"])


@dataclass(frozen=True)
class FeatureSource:
    """Which frozen backbone makes the features of a probe or an OOD reference, and how."""

    backbone: str
    weights: Weights
    size: int
    policy: str
    passed: tuple[str, ...] = ()  # why earlier candidates were passed over


def feature_source(transfer_result: Mapping[str, Any] | None, fallback: Sequence[str]) -> FeatureSource:
    """The backbone of a transfer run (its weights, image size and precision, as it was trained),
    else the first of ``fallback`` with offline ImageNet weights at 224 px in float32."""
    if transfer_result is not None:
        effective = transfer_result["effective"]
        return FeatureSource(
            effective["backbone"],
            Weights.from_record(transfer_result["weights"]),
            int(effective["image_size"]),
            recorded_policy(transfer_result),
        )
    backbone, weights, passed = first_available(tuple(fallback))
    return FeatureSource(backbone, weights, 224, "float32", tuple(passed))


def get_backbone(name: str) -> Backbone:
    """A registry entry, or an error listing the known names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise config.ConfigError(f"unknown backbone '{name}' (known: {', '.join(BACKBONES)})") from None


def check_transfer_params(params: Mapping[str, Any]) -> list[str]:
    """Reject impossible transfer-run values before the run (ConfigError naming key and value);
    returns warnings (a randomly initialised backbone is not transfer learning)."""
    problems = config.below_minimum(
        params,
        {**config.TRAINING_MINIMUMS, "fine_tune_layers": 0, "fine_tune_epochs": 1, "fine_tune_max_train_images": 2},
        above={"learning_rate": 0, "fine_tune_learning_rate": 0},
    )
    if params["backbone"] not in BACKBONES:
        problems.append(f"key 'backbone' = {params['backbone']!r} is not one of {', '.join(BACKBONES)}")
    elif params["image_size"] < BACKBONES[params["backbone"]].min_size:
        problems.append(
            f"key 'image_size' = {params['image_size']} is below {params['backbone']}'s minimum "
            f"of {BACKBONES[params['backbone']].min_size} px"
        )
    problems += config.not_one_of(params, {"weights": ("imagenet", "none"), **config.TRAINING_CHOICES})
    if problems:
        raise config.ConfigError("; ".join(problems))
    return (
        ["random init: this backbone has no pretrained weights; the run is not transfer learning"]
        if params["weights"] == "none"
        else []
    )


def weights_dirs() -> list[tuple[Path, str]]:
    """Weights folders in search order, each with the name of the setting that gave it."""
    dirs = []
    if os.environ.get(config.WEIGHTS_DIR_ENV):
        dirs.append((Path(os.environ[config.WEIGHTS_DIR_ENV]), config.WEIGHTS_DIR_ENV))
    dirs.append((config.output_root() / "weights", "the project's outputs/weights/"))
    shared = config.PROJECT_ROOT.parent / "shared" / "weights"
    if shared.is_dir():
        dirs.append((shared, "the shared weights folder"))
    return dirs


def keras_cache_dir() -> Path:
    """Keras' own cache of downloaded files."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def provenance_file(weights_file: Path) -> Path:
    """The JSON note beside a provisioned weights file (origin, hashes, verification)."""
    return weights_file.with_name(weights_file.name.split(".")[0] + ".provenance.json")


def _origin(path: Path, where: str) -> str:
    note = provenance_file(path)
    if note.is_file():
        return f"{json.loads(note.read_text()).get('origin', 'provisioned')}; found in {where}"
    return where


def check_hash(backbone: Backbone, path: Path) -> str:
    """sha256 of the file; raises if the registry records a different one for this file name."""
    digest = file_sha256(path)
    expected = backbone.sha256.get(path.name)
    if expected and digest != expected:
        raise WeightsHashMismatch(
            f"{path}: sha256 {digest} is not the recorded {expected} for {backbone.name}; "
            "the file is damaged or not the official one"
        )
    return digest


def resolve_weights(
    name: str,
    weights: str = "imagenet",
    explicit: str | None = None,
    download: Callable[[Backbone], Path] | None = None,
) -> Weights:
    """Find the weights a run asked for (see the module docstring for the order)."""
    backbone = get_backbone(name)
    if weights == "none":
        return Weights(None, None, RANDOM_INIT)
    if weights != "imagenet":
        raise config.ConfigError(f"weights '{weights}' must be 'imagenet' or 'none'")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFound(f"weights_path {path} for {name} does not exist")
        return Weights(str(path), check_hash(backbone, path), _origin(path, "the weights_path parameter"))
    tried = []
    places = weights_dirs() + [(keras_cache_dir(), "Keras' cache")]
    for folder, where in places:
        for filename in backbone.weight_files:
            path = folder / filename
            tried.append(str(path))
            if path.is_file():
                return Weights(str(path), check_hash(backbone, path), _origin(path, where))
    if download is not None and os.environ.get(config.OFFLINE_ENV):
        tried.append("Keras download (off: CXR_OFFLINE is set)")
    elif download is not None:
        try:
            path = download(backbone)
            return Weights(str(path), check_hash(backbone, path), "downloaded by Keras")
        except Exception as err:  # keras.utils.get_file raises a bare Exception on a URL failure
            tried.append(f"Keras download ({type(err).__name__}: {err})")
    summary = f"no ImageNet weights for backbone '{name}'"
    raise WeightsNotFound(
        f"{summary}. Looked for {', '.join(backbone.weight_files)} in: "
        + "; ".join(tried)
        + ". Put the file in outputs/weights/ or a folder named by CXR_WEIGHTS_DIR, or pass weights_path"
        + (", or run `python -m cxr_utils weights provision xception`" if name == "xception" else "")
        + ". A run may use weights: none, which is labelled 'random init' and is not transfer learning.",
        summary,
    )


def first_available(names: list[str] | tuple[str, ...]) -> tuple[str, Weights, list[str]]:
    """The first backbone of ``names`` whose ImageNet weights are found offline, its weights, and
    why each earlier one was passed over; WeightsNotFound when none is."""
    passed = []
    for name in names:
        try:
            return name, resolve_weights(name), passed
        except WeightsNotFound as err:
            passed.append(f"{name}: {err.summary}")
    raise WeightsNotFound("no ImageNet weights for any of " + ", ".join(names) + ": " + "; ".join(passed))


def keras_download(backbone: Backbone) -> Path:
    """Keras' normal download of the no-top ImageNet weights (needs internet)."""
    import keras

    builder = getattr(keras.applications, backbone.constructor)
    builder(weights="imagenet", include_top=False, **backbone.kwargs)
    for filename in backbone.weight_files:
        if (keras_cache_dir() / filename).is_file():
            return keras_cache_dir() / filename
    raise RuntimeError(f"Keras downloaded {backbone.name} weights under an unexpected name in {keras_cache_dir()}")


# --------------------------------------------------------------------------- models


@functools.cache
def preprocessing_layer_class():
    """A serialisable layer doing what each family's ``preprocess_input`` does (0-255 RGB in)."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="cxr_utils")
    class BackbonePreprocess(keras.layers.Layer):
        MEANS = {"caffe": (103.939, 116.779, 123.68), "torch": (0.485, 0.456, 0.406)}
        STDS = (0.229, 0.224, 0.225)

        def __init__(self, mode: str, **kwargs):
            super().__init__(**kwargs)
            self.mode = mode

        def call(self, x):
            if self.mode == "tf":
                return x / 127.5 - 1.0
            if self.mode == "caffe":  # RGB -> BGR, minus the ImageNet mean
                return ops.flip(x, axis=-1) - ops.convert_to_tensor(self.MEANS["caffe"], dtype=x.dtype)
            if self.mode == "torch":
                mean = ops.convert_to_tensor(self.MEANS["torch"], dtype=x.dtype)
                return (x / 255.0 - mean) / ops.convert_to_tensor(self.STDS, dtype=x.dtype)
            return x

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    return BackbonePreprocess


def build_extractor(name: str, weights: Weights, size: int):
    """Input (size, size, 3) pixel values 0-255 -> preprocessing -> backbone -> pooled features.

    The backbone is a nested model named ``backbone`` so that fine-tuning can reach its layers.
    """
    import keras

    backbone = get_backbone(name)
    if size < backbone.min_size:
        raise config.ConfigError(f"{name} needs images of at least {backbone.min_size} px; got {size}")
    builder = getattr(keras.applications, backbone.constructor)
    net = builder(
        weights=None, include_top=False, input_shape=(size, size, 3), pooling="avg", name="backbone", **backbone.kwargs
    )
    if weights.file is not None:
        net.load_weights(weights.file)
    inputs = keras.Input((size, size, 3), name="image")
    x = preprocessing_layer_class()(backbone.preprocess, name="preprocess")(inputs)
    return keras.Model(inputs, net(x, training=False), name=f"{name}_extractor")


def unfreeze_top(model, n_layers: int) -> int:
    """Make the top ``n_layers`` layers of the nested backbone trainable, BatchNorm excepted.

    The backbone is called with ``training=False`` (see :func:`build_extractor`), so its
    BatchNorm layers also keep their ImageNet statistics. Returns the number of layers unfrozen.
    """
    import keras

    net = _find_backbone(model)
    if net is None:
        raise config.ConfigError(f"model {model.name} has no nested layer named 'backbone'")
    _set_trainable(model, True)  # a nested model frozen on its own is not reached by model.trainable
    for layer in net.layers[:-n_layers] if n_layers < len(net.layers) else []:
        layer.trainable = False
    unfrozen = 0
    for layer in net.layers[-n_layers:]:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif layer.weights:
            unfrozen += 1
    return unfrozen


def _set_trainable(layer, value: bool) -> None:
    layer.trainable = value
    for inner in getattr(layer, "layers", []):
        _set_trainable(inner, value)


def _find_backbone(model):
    for layer in model.layers:
        if layer.name == "backbone":
            return layer
        if hasattr(layer, "layers"):
            found = _find_backbone(layer)
            if found is not None:
                return found
    return None


def load_model(path: str | Path):
    """Load a saved transfer model (registers the preprocessing layer first)."""
    import keras

    preprocessing_layer_class()
    return keras.saving.load_model(path)
