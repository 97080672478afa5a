"""Benchmark: one epoch of the study's run 2 model, this project's pipeline vs the study's.

    .venv/bin/python benchmarks/input_pipeline.py [--profile default] [--epochs 2]

Both pipelines feed the same training images (run 2 at the chosen profile: size, batch size
and class-balanced subset) to the same model with the same augmentation settings:

- cached: images decoded and resized once into outputs/cache/, held as uint8, fed through
  tf.data with Keras preprocessing layers for augmentation (this project);
- study-style: Keras' legacy ImageDataGenerator.flow_from_directory, which decodes and
  resizes every image file again in every epoch (as the study did), from a folder of links.

Prints images/second of the median training epoch after the first (which includes graph
tracing) for each, and their ratio, then the same for the input pipelines alone (one pass, no training step),
which shows where the difference comes from. Not a test: numbers depend on the machine and
on image sizes (the shared mirror's files are at most 512 px, so decoding them is cheaper
than decoding the upstream originals); run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cxr_utils import config, registry  # noqa: E402
from cxr_utils.data import datasets
from cxr_utils.modeling import models, training


def epoch_seconds(model, data, epochs: int) -> list[float]:
    """Wall seconds of each epoch of ``model.fit`` on ``data``."""
    import keras

    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(data, epochs=epochs, callbacks=[Timer()], verbose=0)
    return times


def pass_seconds(batches) -> float:
    """Wall seconds to draw every batch once (a tf.data dataset or a legacy iterator)."""
    started = time.perf_counter()
    if hasattr(batches, "__getitem__"):
        for index in range(len(batches)):
            batches[index]
    else:
        for _ in batches:
            pass
    return time.perf_counter() - started


def fresh_model(params: dict):
    training.seed_everything(params["seed"])
    model = models.build_custom_cnn(
        params["image_size"],
        params["filter"],
        params["activation"],
        params["activation_output"],
        params["layers_to_add"],
        params["channels"],
    )
    models.compile_model(model, params["optimizer"], params["learning_rate"], params["loss"])
    return model


def study_style_iterator(rows, root: Path, folder: Path, params: dict):
    """The study's generator over a class-per-folder tree of links to the same files."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    for row in rows.itertuples():
        target = folder / row.label / f"{row.Index:05d}{Path(row.path).suffix.lower()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(Path(root) / row.path)
    spec = datasets.STUDY_AUGMENTATION
    generator = ImageDataGenerator(  # no rescale: the model's Rescaling layer does it
        rotation_range=spec["rotation_degrees"],
        width_shift_range=spec["shift"],
        height_shift_range=spec["shift"],
        shear_range=spec["shear_degrees"],
        zoom_range=spec["zoom"],
        horizontal_flip=spec["horizontal_flip"],
        fill_mode=spec["fill_mode"],
    )
    return generator.flow_from_directory(
        str(folder),
        target_size=(params["image_size"],) * 2,
        batch_size=params["batch_size"],
        class_mode="binary",
        seed=params["seed"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--data-run", default="default", help="the 01_data_merge run to read")
    args = parser.parse_args()

    requested = config.load_params_file(config.PROJECT_ROOT / "params" / "custom" / "run02.yaml")
    params, _ = config.apply_profile(requested, args.profile)
    manifest = datasets.read_manifest(registry.manifest_file(args.data_run))
    root = config.data_root()
    fill_start = time.perf_counter()
    train = datasets.load_split(
        manifest,
        "train",
        params["image_size"],
        root=root,
        max_images=params["max_train_images"],
        balanced=True,
        seed=params["seed"],
    )
    fill = time.perf_counter() - fill_start
    n = len(train.y)
    print(
        f"run02 at profile {args.profile}: {n} training images, {params['image_size']} px, "
        f"batch {params['batch_size']}; loading them (cache fill or read): {fill:.1f} s"
    )

    cached = datasets.make_dataset(
        train,
        batch_size=params["batch_size"],
        channels=params["channels"],
        shuffle_seed=params["seed"],
        augment=datasets.augmentation_layers(params["seed"]),
    )
    ours = epoch_seconds(fresh_model(params), cached, args.epochs)
    ours_alone = pass_seconds(cached)
    with tempfile.TemporaryDirectory() as tmp:
        legacy = study_style_iterator(train.rows, root, Path(tmp), params)
        theirs = epoch_seconds(fresh_model(params), legacy, args.epochs)
        theirs_alone = pass_seconds(legacy)

    print(f"epoch seconds, cached tf.data:   {[round(s, 2) for s in ours]}")
    print(f"epoch seconds, study-style:      {[round(s, 2) for s in theirs]}")
    ours_epoch, theirs_epoch = statistics.median(ours[1:] or ours), statistics.median(theirs[1:] or theirs)
    for what, a, b in (
        ("training epoch (median)", ours_epoch, theirs_epoch),
        ("input pipeline alone", ours_alone, theirs_alone),
    ):
        print(f"{what}: cached tf.data {n / a:8.1f} images/s, study-style {n / b:8.1f} images/s, ratio {b / a:.2f}x")
    print(f"(cpu_count={os.cpu_count()})")


if __name__ == "__main__":
    main()
