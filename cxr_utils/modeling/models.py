"""Models: the study's custom CNN, its compile step, and checks of its parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import TRAINING_CHOICES, TRAINING_MINIMUMS, ConfigError, below_minimum, not_one_of

OPTIMIZERS = ("rmsprop", "adam")
LOSSES = ("binary_crossentropy", "categorical_crossentropy")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax")


def check_custom_cnn_params(params: Mapping[str, Any]) -> list[str]:
    """Reject impossible values (ConfigError); return warnings for degenerate combinations.

    The study ran two degenerate set-ups and reported them as results: a softmax over a
    single output unit is constantly 1, and categorical cross-entropy over a single unit is
    constantly 0 (Keras normalises the one prediction to 1). In both the weights still move
    (Keras 3 takes the loss from the logits), but the scores cannot: they stay 1, or all move
    the same way. Both still run here, flagged.
    """
    problems = below_minimum(
        params,
        {**TRAINING_MINIMUMS, "image_size": 1, "filter": 1, "layers_to_add": 0},
        above={"learning_rate": 0},
    )
    choices = {"channels": (1, 3), "loss": LOSSES, "activation_output": OUTPUT_ACTIVATIONS, **TRAINING_CHOICES}
    problems += not_one_of(params, choices)
    problems += not_one_of({"optimizer": str(params["optimizer"]).lower()}, {"optimizer": OPTIMIZERS})
    smallest = params["image_size"] // 2 ** (4 + max(params["layers_to_add"], 0))
    if smallest < 1 and params["image_size"] >= 1:
        problems.append(
            f"key 'image_size' = {params['image_size']} is too small for {4 + params['layers_to_add']} pooling layers"
        )
    if problems:
        raise ConfigError("; ".join(problems))
    warnings = []
    if params["activation_output"] == "softmax":
        warnings.append(
            "degenerate: softmax over a single output unit always outputs 1.0, so every image is "
            "predicted COVID and AUC is 0.5 whatever the weights learn (the study's runs 12-13)"
        )
    if params["loss"] == "categorical_crossentropy":
        warnings.append(
            "degenerate: categorical cross-entropy over a single output unit is constantly 0 (Keras "
            "normalises the one prediction to 1), so the loss says nothing; its gradient, taken from "
            "the logits, pushes every non-COVID score down and no COVID score up (the study's run 14)"
        )
    return warnings


def build_custom_cnn(
    image_size: int = 256,
    filter: int = 3,  # noqa: A002 - the study's parameter name
    activation: str = "relu",
    activation_output: str = "sigmoid",
    layers_to_add: int = 0,
    channels: int = 3,
):
    """The study's CNN: 4 (+``layers_to_add``) Conv2D+MaxPool blocks, Dropout, Dense(512), Dense(1).

    Inputs are pixel values 0-255; a Rescaling layer (no weights) scales them to 0-1 as the
    study's ``rescale=1./255`` did. At 256 px, 3x3 filters and 3 channels: 17,019,073 parameters.
    """
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for n, width in enumerate([32, 64, 128, 128] + [128] * layers_to_add, start=1):
        x = layers.Conv2D(width, filter, padding="same", activation=activation, name=f"conv{n}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{n}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    x = layers.Dense(512, activation=activation, name="dense")(x)
    outputs = layers.Dense(1, activation=activation_output, name="output", dtype="float32")(
        x
    )  # float32 under any policy
    return keras.Model(inputs, outputs, name="custom_cnn")


def custom_cnn_from(params: Mapping[str, Any], activation_output: str | None = None):
    """The study's CNN (uncompiled) of a run's parameters; ``activation_output`` overrides the
    run's own output activation."""
    return build_custom_cnn(
        params["image_size"],
        params["filter"],
        params.get("activation", "relu"),
        activation_output or params.get("activation_output", "sigmoid"),
        params.get("layers_to_add", 0),
        params.get("channels", 3),
    )


def compile_model(model, optimizer: str, learning_rate: float, loss: str) -> None:
    """Compile with the study's metrics (accuracy, AUC) and ``learning_rate=`` (not ``lr=``)."""
    import keras

    optimizers = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}
    model.compile(
        optimizer=optimizers[optimizer.lower()](learning_rate=learning_rate),
        loss=loss,
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )
