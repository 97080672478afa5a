"""Choose Keras' precision policy from the hardware: the fast path where there is one.

Some of the project's machines are Intel Xeons with AMX / AVX512-BF16 (``/proc/cpuinfo`` flags
``amx_bf16``, ``avx512_bf16``), where TensorFlow's oneDNN kernels run bfloat16 convolutions about
twice as fast as float32; others (AMD EPYC, AVX2 only) have no native bfloat16, where it would be
slower. ``auto`` picks ``mixed_bfloat16`` on the former, ``mixed_float16`` on a GPU and
``float32`` otherwise. Under a mixed policy the models keep their output layer (and its
probabilities) in float32, so scores stay float32 for scikit-learn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import config

POLICIES = config.PRECISION_POLICIES
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    """The policy a run used and why (recorded in ``result.json``)."""

    policy: str
    requested: str
    reason: str
    cpu: str
    bf16_flags: tuple[str, ...]

    def as_dict(self) -> dict:
        return {**asdict(self), "bf16_flags": list(self.bf16_flags)}


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def choose_policy(requested: str = "auto", cpuinfo: Path = config.CPUINFO, gpu: bool | None = None) -> Precision:
    """``auto``: mixed_float16 on a GPU, mixed_bfloat16 where the CPU has native bfloat16,
    float32 otherwise. An explicit policy is used as asked (the reason says so). Where the
    environment sets ``CXR_PRECISION``, ``auto`` becomes that policy: one switch for a whole build
    (e.g. ``CXR_PRECISION=float32 make report`` times the float32 class on a bfloat16 CPU)."""
    model, flags = config.cpu_description(cpuinfo)
    found = tuple(f for f in BF16_FLAGS if f in flags)
    asked_by, setting = "the run's precision parameter", f"key 'precision' = {requested!r}"
    if requested == "auto" and os.environ.get(config.PRECISION_ENV):
        requested = os.environ[config.PRECISION_ENV]
        asked_by, setting = f"{config.PRECISION_ENV} in the environment", f"{config.PRECISION_ENV}={requested!r}"
    if requested != "auto" and requested not in POLICIES:
        raise config.ConfigError(f"{setting} is not auto or one of {', '.join(POLICIES)}")
    if requested != "auto":
        reason = f"asked for by {asked_by}"
        if requested == "mixed_bfloat16" and not found:
            reason += " (this CPU has no native bfloat16: expect it to be slower than float32)"
        return Precision(requested, requested, reason, model, found)
    if gpu if gpu is not None else gpu_visible():
        return Precision("mixed_float16", requested, "a GPU is visible", model, found)
    if found:
        return Precision("mixed_bfloat16", requested, f"the CPU has native bfloat16 ({', '.join(found)})", model, found)
    return Precision("float32", requested, "no GPU and no native bfloat16 on this CPU", model, found)


def apply_policy(precision: Precision) -> None:
    """Set Keras' global dtype policy (models built afterwards use it)."""
    import keras

    keras.mixed_precision.set_global_policy(precision.policy)


def recorded_policy(result: Mapping[str, Any]) -> str:
    """The policy a run recorded in its ``result.json`` (float32 for runs that recorded none)."""
    return (result.get("precision") or {}).get("policy", "float32")


def apply_recorded(policy: str, why: str) -> None:
    """Set a policy chosen earlier (to rebuild a model as it was trained), ``why`` saying so."""
    apply_policy(Precision(policy, policy, why, "", ()))
