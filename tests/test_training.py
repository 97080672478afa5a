"""What training adds (epoch 0, learning check, early stopping), the precision policy and the CPU kernels."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cxr_utils import config
from cxr_utils.modeling import experiment, models, precision, training


def cpuinfo(tmp_path, flags: str, model: str = "Test CPU"):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
    return path


def test_precision_follows_the_hardware_and_an_explicit_request(tmp_path, monkeypatch):
    monkeypatch.delenv(config.PRECISION_ENV, raising=False)
    amx = cpuinfo(tmp_path, "avx512f avx512_bf16 amx_bf16 amx_tile", "Intel Xeon")
    chosen = precision.choose_policy("auto", amx, gpu=False)
    assert chosen.policy == "mixed_bfloat16" and chosen.bf16_flags == ("amx_bf16", "avx512_bf16")
    assert chosen.cpu == "Intel Xeon" and "native bfloat16" in chosen.reason
    avx2 = cpuinfo(tmp_path, "avx2 fma", "AMD EPYC")
    assert precision.choose_policy("auto", avx2, gpu=False).policy == "float32"
    assert precision.choose_policy("auto", avx2, gpu=True).policy == "mixed_float16"
    forced = precision.choose_policy("mixed_bfloat16", avx2, gpu=False)
    assert forced.policy == "mixed_bfloat16" and "slower" in forced.reason
    assert precision.choose_policy("float32", amx, gpu=False).policy == "float32"
    with pytest.raises(config.ConfigError, match="key 'precision' = 'fp8'"):
        precision.choose_policy("fp8", amx)
    assert precision.choose_policy("auto", tmp_path / "absent", gpu=False).policy == "float32"


def test_the_environment_sets_the_policy_of_auto_runs_only(tmp_path, monkeypatch):
    amx = cpuinfo(tmp_path, "avx512f avx512_bf16 amx_bf16 amx_tile", "Intel Xeon")
    monkeypatch.setenv(config.PRECISION_ENV, "float32")
    chosen = precision.choose_policy("auto", amx, gpu=False)
    assert chosen.policy == "float32" and config.PRECISION_ENV in chosen.reason
    assert precision.choose_policy("mixed_bfloat16", amx, gpu=False).policy == "mixed_bfloat16"
    monkeypatch.setenv(config.PRECISION_ENV, "fp8")
    with pytest.raises(config.ConfigError, match=f"{config.PRECISION_ENV}='fp8'"):
        precision.choose_policy("auto", amx, gpu=False)


def test_cpu_kernels_say_oneDNN_or_Eigen_and_what_tensorflow_would_pick(tmp_path, monkeypatch):
    avx2 = cpuinfo(tmp_path, "avx2 fma", "AMD EPYC")
    monkeypatch.setenv(config.ONEDNN_ENV, "1")
    assert config.cpu_kernels(avx2) == {
        "library": "oneDNN",
        config.ONEDNN_ENV: "1",
        "tensorflow_default_on_this_cpu": "Eigen",
    }
    monkeypatch.setenv(config.ONEDNN_ENV, "0")
    assert config.cpu_kernels(avx2)["library"] == "Eigen"
    monkeypatch.delenv(config.ONEDNN_ENV)
    assert config.cpu_kernels(avx2)["library"] == "Eigen"  # unset: TensorFlow's own choice
    vnni = cpuinfo(tmp_path, "avx2 avx512f avx512_vnni", "AMD EPYC")
    assert config.cpu_kernels(vnni) == {
        "library": "oneDNN",
        config.ONEDNN_ENV: None,
        "tensorflow_default_on_this_cpu": "oneDNN",
    }


@pytest.mark.parametrize("before, after", [(None, "1"), ("0", "0"), ("1", "1")])
def test_importing_cxr_utils_turns_oneDNN_on_unless_the_environment_says(before, after):
    env = {key: value for key, value in os.environ.items() if key != config.ONEDNN_ENV}
    if before is not None:
        env[config.ONEDNN_ENV] = before
    code = f"import os, cxr_utils; print(os.environ.get({config.ONEDNN_ENV!r}))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == after


def test_under_bfloat16_the_output_stays_float32():
    import keras

    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        model = models.build_custom_cnn(32, 3)
        conv = model.get_layer("conv1")
        assert conv.compute_dtype == "bfloat16"
        scores = model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
        assert scores.dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def history(loss, val_auc):
    return pd.DataFrame({"epoch": range(1, len(loss) + 1), "loss": loss, "val_auc": val_auc})


def test_learning_check_needs_a_val_gain_over_epoch_zero_and_a_falling_loss():
    learned, reason = experiment.learning_check(0.70, 0.80, history([0.7, 0.6, 0.5], [0.7, 0.75, 0.8]))
    assert learned and reason == ""
    learned, reason = experiment.learning_check(0.78, 0.79, history([0.7, 0.6], [0.78, 0.79]))
    assert not learned and "not above epoch 0's 0.780 by more than 0.02" in reason
    learned, reason = experiment.learning_check(0.5, 0.9, history([0.6, 0.6, 0.7], [0.6, 0.9, 0.8]))
    assert not learned and "training loss never fell below its first epoch's (0.6000)" in reason
    assert experiment.learning_check(0.5, 0.9, history([0.6], [0.9]))[0]  # one epoch: no loss trend to check


def test_early_stopping_says_what_ended_training(tmp_path):
    import keras

    training.seed_everything(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")[:, None]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(
        keras.optimizers.SGD(learning_rate=0.0), "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")]
    )
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    stalled = training.fit(model, data, data, epochs=20, folder=tmp_path / "a", verbose=0, patience=2)
    assert stalled.stopped_by == "patience" and len(stalled.history) == 3 and stalled.best_epoch == 1
    capped = training.fit(model, data, data, epochs=2, folder=tmp_path / "b", verbose=0, patience=5)
    assert capped.stopped_by == "epoch cap" and capped.epochs_cap == 2
    assert capped.last()["val_auc"] == capped.history["val_auc"].iloc[-1]
