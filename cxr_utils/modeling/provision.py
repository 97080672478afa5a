"""Offline weights: extract Xception's ImageNet weights from a PyPI wheel, verified.

``python -m cxr_utils weights provision xception [--wheel FILE] [--dest DIR]``

The wheel ``pneumonia-model-package==0.3.0`` ships a Keras 3 model whose layer ``xception`` is
``keras.applications.Xception(weights="imagenet", include_top=False)`` kept frozen during its
training, so that layer holds the ImageNet weights. The wheel is fetched with ``pip download
--no-deps`` (its dependency pins clash with this project), the layer's weights are saved as
``xception_imagenet_notop.weights.h5``, checked tensor by tensor against a fresh
``keras.applications.Xception(include_top=False)``, and described in a provenance note
(origin, wheel and file sha256, tensor count) beside the file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .. import config
from ..data.images import file_sha256
from ..results import now
from .backbones import provenance_file, weights_dirs

WHEEL_REQUIREMENT = "pneumonia-model-package==0.3.0"
MEMBER_SUFFIX = ".keras"
LAYER = "xception"
TARGET = "xception_imagenet_notop.weights.h5"


class ProvisionError(config.ConfigError):
    """Provisioning failed; the message says at which step."""


def fetch_wheel(folder: Path) -> Path:
    """``pip download --no-deps`` the wheel into ``folder`` (needs the package index)."""
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob("pneumonia_model_package-0.3.0-*.whl"))
    if not found:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            WHEEL_REQUIREMENT,
            "-d",
            str(folder),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ProvisionError(f"`{' '.join(command)}` failed: {result.stderr.strip()[-500:]}")
        found = sorted(folder.glob("pneumonia_model_package-0.3.0-*.whl"))
    if not found:
        raise ProvisionError(f"no pneumonia_model_package-0.3.0 wheel in {folder} after pip download")
    return found[0]


def _model_member(wheel: zipfile.ZipFile) -> str:
    members = [m for m in wheel.namelist() if m.endswith(MEMBER_SUFFIX)]
    if len(members) != 1:
        raise ProvisionError(f"expected one {MEMBER_SUFFIX} model in the wheel, found {members}")
    return members[0]


def reference_shapes() -> list[tuple[int, ...]]:
    """Shapes of a fresh ``Xception(include_top=False)``'s weights, in order."""
    import keras

    return [tuple(w.shape) for w in keras.applications.Xception(weights=None, include_top=False).weights]


def batchnorm_statistics_trained(model) -> bool:
    """Trained weights move BatchNorm statistics away from their initial values (mean 0, var 1)."""
    import keras
    import numpy as np

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    drift = [
        np.abs(layer.moving_mean.numpy()).mean() + np.abs(layer.moving_variance.numpy() - 1).mean() for layer in layers
    ]
    return bool(layers) and float(np.mean(drift)) > 1e-3


def extract_xception(wheel_path: Path, dest_dir: Path) -> Path:
    """Extract, save, verify and describe the weights; returns the weights file."""
    import keras

    wheel_path = Path(wheel_path)
    with zipfile.ZipFile(wheel_path) as wheel, tempfile.TemporaryDirectory() as tmp:
        member = _model_member(wheel)
        model_file = Path(wheel.extract(member, tmp))
        model = keras.saving.load_model(model_file, compile=False)
        try:
            layer = model.get_layer(LAYER)
        except ValueError as err:
            raise ProvisionError(f"{member} has no layer named '{LAYER}'") from err
        if layer.trainable:
            raise ProvisionError(
                f"layer '{LAYER}' in {member} was trainable in the source model: its weights may have been "
                "trained on X-rays, so they are not taken for ImageNet's"
            )
        shapes = [tuple(w.shape) for w in layer.weights]
        expected = reference_shapes()
        if shapes != expected:
            raise ProvisionError(
                f"layer '{LAYER}' in {member} has {len(shapes)} tensors that do not match a fresh "
                f"Xception(include_top=False) ({len(expected)} tensors)"
            )
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / TARGET
        layer.save_weights(target)
    check = keras.applications.Xception(weights=None, include_top=False)
    check.load_weights(target)  # the file loads into a fresh Xception
    if not batchnorm_statistics_trained(check):
        target.unlink()
        raise ProvisionError(f"layer '{LAYER}' in {member} has untrained BatchNorm statistics: not ImageNet weights")
    note = {
        "origin": f"extracted from PyPI {WHEEL_REQUIREMENT} ({member}, layer '{LAYER}')",
        "wheel": wheel_path.name,
        "wheel_sha256": file_sha256(wheel_path),
        "file": target.name,
        "sha256": file_sha256(target),
        "tensors": len(shapes),
        "verified_against": "keras.applications.Xception(include_top=False): tensor count and shapes; "
        "BatchNorm statistics trained (not the initial 0/1); the layer frozen (trainable: false) in the source "
        "model, so its training did not change it. Not verified by hash: Keras' own file is not reachable offline.",
        "created": now(),
    }
    provenance_file(target).write_text(json.dumps(note, indent=2) + "\n")
    return target


def already_provisioned(target: Path) -> bool:
    """The file exists and its sha256 is the one its provenance note recorded."""
    note = provenance_file(target)
    if not (target.is_file() and note.is_file()):
        return False
    return json.loads(note.read_text()).get("sha256") == file_sha256(target)


def provision(name: str, wheel: str | None = None, dest: str | None = None) -> Path:
    """Provision weights for ``name`` (only ``xception`` has an offline source)."""
    if name != "xception":
        raise ProvisionError(f"no offline source is known for '{name}' weights; only xception can be provisioned")
    dest_dir = Path(dest) if dest else weights_dirs()[0][0]  # where the resolver looks first
    target = dest_dir / TARGET
    if already_provisioned(target) and wheel is None:
        print(f"{target} is already provisioned (sha256 matches its provenance note)")
        return target
    wheel_path = Path(wheel) if wheel else fetch_wheel(config.cache_dir() / "downloads")
    target = extract_xception(wheel_path, dest_dir)
    note = json.loads(provenance_file(target).read_text())
    print(f"{target}\n  sha256 {note['sha256']}\n  {note['origin']}\n  {note['tensors']} tensors verified")
    return target
