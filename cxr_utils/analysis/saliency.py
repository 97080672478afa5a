"""Grad-CAM heat maps of P(COVID), their overlay on the X-ray, and where their mass lies.

One implementation for the study's custom CNN and for the transfer models (whose last
convolutional feature map lives inside the nested ``backbone`` model). A layer is named by a
*path* from the top model down through nested models, e.g. ``("conv4",)`` for the custom CNN
or ``("mobilenet025_extractor", "backbone", "conv_pw_13_relu")`` for an end-to-end transfer
model (see :func:`last_conv_layer`).

The region masks (:func:`central_lung_mask`, :func:`border_mask`) are fixed geometric
approximations of a frontal chest X-ray's layout, the same rectangle / band for every image.
Each image's own lungs come from the segmentation model (:mod:`cxr_utils.analysis.lungs`); the
rectangle stands in where its mask is flagged as implausible or where no model is cached.
"""

from __future__ import annotations

import numpy as np

# The central "lung field" rectangle of central_lung_mask, as fractions of the image side:
# rows 20 % to 85 % (below the neck and shoulders, above the abdomen), columns 15 % to 85 %.
LUNG_ROWS = (0.20, 0.85)
LUNG_COLS = (0.15, 0.85)

_SKIPPED_LAYERS = ("InputLayer", "Rescaling", "Normalization", "Resizing", "BackbonePreprocess")


# --------------------------------------------------------------------------- layers


def last_conv_layer(model) -> tuple[str, ...]:
    """The path to the last layer with a 4-D (spatial) output before the pooling / flatten.

    Nested models are searched (last first), so a transfer model gives a path into its
    ``backbone``. Pooling layers and input / preprocessing layers are skipped: the custom CNN
    gives its last ``conv*`` layer (not ``pool4``), VGG16 ``block5_conv3`` (not ``block5_pool``).
    """
    path = _last_spatial(model)
    if path is None:
        raise ValueError(f"model '{model.name}' has no layer with a 4-D (spatial) output for Grad-CAM")
    return path


def _last_spatial(model) -> tuple[str, ...] | None:
    for layer in reversed(model.layers):
        if _is_model(layer):
            inner = _last_spatial(layer)
            if inner is not None:
                return (layer.name, *inner)
        elif _is_spatial(layer):
            return (layer.name,)
    return None


def _is_model(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def _is_spatial(layer) -> bool:
    import keras

    if type(layer).__name__ in _SKIPPED_LAYERS or "Pooling" in type(layer).__name__:
        return False
    output = layer.output
    return isinstance(output, keras.KerasTensor) and len(output.shape) == 4


def _layer_at(model, path: tuple[str, ...]):
    layer = model
    for depth, name in enumerate(path):
        if not _is_model(layer):
            raise ValueError(f"'{'/'.join(path[:depth])}' in model '{model.name}' is not a nested model")
        try:
            layer = layer.get_layer(name)
        except ValueError:
            raise ValueError(f"model '{model.name}' has no layer '{'/'.join(path[: depth + 1])}'") from None
    return layer


# --------------------------------------------------------------------------- Grad-CAM

SCORES = ("log_odds", "probability")


def _output_dense(model):
    """The Dense layer that ends ``model`` (through nested models), with its activation checked."""
    import keras

    last = model.layers[-1]
    if _is_model(last):
        return _output_dense(last)
    name = getattr(getattr(last, "activation", None), "__name__", None)
    if not isinstance(last, keras.layers.Dense) or name not in ("sigmoid", "softmax") or last.units > 2:
        raise ValueError(
            f"model '{model.name}' must end in a Dense(1, sigmoid) or Dense(2, softmax) layer for Grad-CAM; "
            f"its last layer is '{last.name}' ({type(last).__name__})"
        )
    return last


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def _rewire(model, path: tuple[str, ...], to_dense_input: bool = True):
    """A model: ``model``'s input -> [activation at ``path`` (when a path is given), the input of
    the final Dense layer (or ``model``'s output when ``to_dense_input`` is False)].

    A model whose path layer and final Dense are its own layers is tapped directly (any
    functional graph); otherwise it must be a chain of single-input layers (as
    ``build_extractor`` and ``end_to_end`` build them), re-built with the nested models along
    the path (and the one holding the final Dense) replaced by their own re-wired versions.
    """
    import keras

    last = model.layers[-1]
    direct = not to_dense_input or not _is_model(last)
    if len(path) <= 1 and direct:
        end = last.input if to_dense_input else model.outputs[0]
        taps = [model.get_layer(path[0]).output] if path else []
        return keras.Model(model.inputs, [*taps, end])
    chain = _chain(model)
    target = model.get_layer(path[0]) if path else None
    inputs = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    x, taps = inputs, []
    for op in chain:
        if op is chain[-1] and to_dense_input and not _is_model(op):
            break  # x is the input of the final Dense
        if op is chain[-1] and to_dense_input:
            *found, x = _as_list(_rewire(op, path[1:] if op is target else ())(x))
            taps += found
        elif op is target and len(path) > 1:
            activation, x = _rewire(op, path[1:], to_dense_input=False)(x)
            taps.append(activation)
        else:
            x = op(x)
            taps += [x] if op is target else []
    return keras.Model(inputs, [*taps, x])


def _chain(model) -> list:
    """The layers of a single-input chain after its input layer, or a ValueError."""
    layers = model.layers
    config = model.get_config() if hasattr(model, "get_config") else {}
    specs = config.get("layers", []) if isinstance(config, dict) else []
    ok = len(model.inputs) == 1 and len(specs) == len(layers) and type(layers[0]).__name__ == "InputLayer"
    for previous, spec in zip(specs, specs[1:]):
        nodes = spec.get("inbound_nodes", [])
        args = nodes[0].get("args", []) if len(nodes) == 1 else []
        history = args[0].get("config", {}).get("keras_history") if len(args) == 1 else None
        ok = ok and bool(history) and history[0] == previous["name"]
    if not ok:
        raise ValueError(
            f"model '{model.name}' is not a chain of single-input layers; Grad-CAM can only reach into "
            "nested models through chains (as build_extractor and end_to_end build them)"
        )
    return layers[1:]


def _covid_score(dense, features, score: str):
    """P(COVID) or its log-odds (B,) float32, from the input of the final Dense layer."""
    import tensorflow as tf

    logits = tf.matmul(tf.cast(features, tf.float32), tf.cast(dense.kernel, tf.float32))
    if dense.use_bias:
        logits += tf.cast(dense.bias, tf.float32)
    if dense.activation.__name__ == "softmax":
        if dense.units == 1:  # softmax over one unit: constantly 1, no gradient (all-zero maps)
            return tf.nn.softmax(logits)[:, 0]
        return tf.nn.softmax(logits)[:, 1] if score == "probability" else logits[:, 1] - logits[:, 0]
    return tf.sigmoid(logits[:, 0]) if score == "probability" else logits[:, 0]


def model_images(model, images: np.ndarray) -> np.ndarray:
    """float32 (N, S, S, C) as the model expects; gray (N, S, S) is repeated over the channels."""
    shape = tuple(model.inputs[0].shape[1:])
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = np.repeat(images[..., None], shape[-1], axis=-1)
    if images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise ValueError(
            f"model '{model.name}' takes images of shape (N, {', '.join(map(str, shape))}); got {images.shape}"
        )
    return images


def gradcam(
    model,
    images: np.ndarray,
    layer: tuple[str, ...] | None = None,
    batch_size: int = 16,
    *,
    score: str = "log_odds",
) -> np.ndarray:
    """Grad-CAM maps (N, S, S) float32 in [0, 1] of the COVID score for images (N, S, S, C)
    (or gray (N, S, S)), pixel values 0-255 as the models take them.

    Channel weights are the spatial mean of the gradient of the COVID score w.r.t. the feature
    map at ``layer`` (a path, default :func:`last_conv_layer`); the map is ReLU(sum_k w_k A_k),
    upsampled bilinearly to S x S and divided by its maximum (an all-zero map stays zero).

    ``score``: "log_odds" (default) is log(P / (1 - P)) of P(COVID), the single sigmoid unit's
    logit or z_covid - z_other of a two-unit softmax: the pre-activation class score of the
    Grad-CAM paper, monotone in P(COVID). "probability" is P(COVID) itself, whose gradient
    vanishes (all-zero maps) where the model is confident, as trained models mostly are.
    Runs in inference mode; activations and gradients are cast to float32 (mixed precision).
    """
    import tensorflow as tf

    if score not in SCORES:
        raise ValueError(f"score {score!r} must be one of {', '.join(SCORES)}")
    path = (layer,) if isinstance(layer, str) else tuple(layer or last_conv_layer(model))
    _layer_at(model, path)
    images = model_images(model, images)
    size = images.shape[1:3]
    dense = _output_dense(model)
    rewired = _rewire(model, path)
    maps = []
    for start in range(0, len(images), batch_size):
        x = tf.constant(images[start : start + batch_size])
        with tf.GradientTape() as tape:
            tape.watch(x)  # a frozen backbone has no trainable variables to record its ops
            activation, features = rewired(x, training=False)
            total = tf.reduce_sum(_covid_score(dense, features, score))
        gradient = tape.gradient(total, activation)
        if gradient is None:
            raise ValueError(f"the COVID score of model '{model.name}' does not depend on layer {'/'.join(path)}")
        weights = tf.reduce_mean(tf.cast(gradient, tf.float32), axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(activation, tf.float32), axis=-1))
        cam = tf.image.resize(cam[..., None], size, method="bilinear")[..., 0]
        maps.append(tf.math.divide_no_nan(cam, tf.reduce_max(cam, axis=(1, 2), keepdims=True)).numpy())
    return np.concatenate(maps).astype(np.float32) if maps else np.zeros((0, *size), np.float32)


# --------------------------------------------------------------------------- display and regions


def overlay(gray: np.ndarray, heat: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8 (S, S, 3): the gray X-ray (S, S) or (S, S, C), pixel values 0-255, blended with
    the heat map (S, S) in [0, 1] coloured by matplotlib's "jet": (1 - alpha) X-ray + alpha colour."""
    from matplotlib import colormaps

    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim == 3:
        gray = gray.mean(axis=-1)
    heat = np.asarray(heat, dtype=np.float32)
    if gray.shape != heat.shape or gray.ndim != 2:
        raise ValueError(
            f"overlay needs an image and a heat map of the same (S, S) shape; got {gray.shape}, {heat.shape}"
        )
    colour = colormaps["jet"](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    base = np.repeat(np.clip(gray, 0.0, 255.0)[..., None], 3, axis=-1)
    return np.clip((1.0 - alpha) * base + alpha * colour + 0.5, 0, 255).astype(np.uint8)


def outline(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (255, 255, 0)) -> np.ndarray:
    """A copy of an RGB image (S, S, 3) with the edge of a boolean mask (S, S) drawn in ``colour``
    (the mask's pixels with a 4-neighbour outside it, or on the image's edge)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {rgb.shape[:2]} differ in size")
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    drawn = np.array(rgb, copy=True)
    drawn[mask & ~inner] = colour
    return drawn


def central_lung_mask(size: int) -> np.ndarray:
    """Boolean (S, S): the fixed central "lung field" rectangle, rows 20-85 % and columns 15-85 %
    of the image (``LUNG_ROWS``, ``LUNG_COLS``; 45.5 % of the area). A geometric approximation
    of where the lungs lie on a centred frontal X-ray, not a segmentation of the image."""
    mask = np.zeros((size, size), dtype=bool)
    top, bottom = (round(f * size) for f in LUNG_ROWS)
    left, right = (round(f * size) for f in LUNG_COLS)
    mask[top:bottom, left:right] = True
    return mask


def border_mask(size: int, width: float = 0.1) -> np.ndarray:
    """Boolean (S, S): the outer band, ``round(width * S)`` pixels wide on each side (at the
    default 0.1: 36 % of the area), where labels, markers and collimation edges sit. Fixed
    geometry, not a segmentation of the image."""
    if not 0 <= width <= 0.5:
        raise ValueError(f"border width {width} must be between 0 and 0.5 of the image side")
    band = round(width * size)
    mask = np.ones((size, size), dtype=bool)
    mask[band : size - band, band : size - band] = False
    return mask


def mass_share(heat: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per image, the share of the heat map's total mass inside the mask: (N,) for heat maps
    (N, S, S) (or (S, S)) and a mask (S, S) or one per image (N, S, S); NaN for an all-zero map."""
    heat = np.asarray(heat, dtype=np.float64)
    heat = heat[None] if heat.ndim == 2 else heat
    mask = np.asarray(mask, dtype=bool)
    if heat.ndim != 3 or mask.shape[-2:] != heat.shape[1:]:
        raise ValueError(f"heat maps (N, S, S) and a mask (S, S) or (N, S, S) needed; got {heat.shape}, {mask.shape}")
    if (heat < 0).any():
        raise ValueError("heat maps must be non-negative")
    total = heat.sum(axis=(1, 2))
    inside = (heat * mask).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
