"""The study's full scale, timed where it is affordable and projected where it is not.

    .venv/bin/python benchmarks/paper_scale.py [--images 100] [--epochs 3] [--workers 2 8 32]
        [--policy auto|float32|mixed_bfloat16] [--gpu-tflops 19.5] [--gpu-utilisation 0.4]
        [--backbones xception mobilenet025 vgg16 inceptionv3 densenet169] [--skip-epoch]

The ``paper`` profile (the study's image sizes, epochs and batches, every image) has never been
run on 2 CPU cores. This script:

1. **Times one whole paper-scale epoch of run09** (256 px, 3x3 filters, batch 50) on as many
   random images as the data merge's training split has (2,497), then scores as many as its val
   split (535): measured, not projected.
2. **Times every distinct grid configuration** (image size, filter, extra layers) with
   ``flops.py``'s ``time_training`` (``--images`` random images, ``--epochs`` epochs, the
   epochs after the first counted, batch 50), and projects each of the 14 runs: seconds per
   training image x training images x the study's epochs, plus one val pass per epoch (a
   forward pass, counted as a third of a training step per image). Random pixels cost what real
   ones do.
3. **Projects the grid** on these 2 cores (one run after another); on N Dask workers, each a
   machine like this one (the runs packed longest first: no run is split); and on a GPU, from a
   published float32 throughput (``--gpu-tflops``; 19.5 is an A100's FP32 peak on NVIDIA's data
   sheet) times an assumed utilisation (``--gpu-utilisation``). The GPU line is arithmetic on
   the FLOP count, not a measurement.
4. **Times the transfer stage's costly part** for each backbone: computing frozen features for
   every image of the data merge at the backbone's size (the head then trains on the cached
   features in about 0.1 s per epoch). The backbones are built without ImageNet weights: their
   cost is the same, and nothing here is trained or called transfer learning.

State the CPU beside the numbers (printed first); compare only within one run. A script, not a test.
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flops import time_training  # noqa: E402

from cxr_utils import config  # noqa: E402
from cxr_utils.modeling import models, precision, training  # noqa: E402

TRAIN_IMAGES, VAL_IMAGES, ALL_IMAGES = 2497, 535, 3611  # the default data merge's splits
BACKBONE_SIZES = {"xception": 224, "mobilenet025": 224, "vgg16": 224, "inceptionv3": 299, "densenet169": 224}


def paper_runs() -> list[dict]:
    """The 14 grid runs' params with the paper profile applied."""
    runs = []
    for path in sorted((config.PROJECT_ROOT / "params" / "custom").glob("run*.yaml")):
        effective, _ = config.apply_profile(config.load_params_file(path), "paper", "02_custom_cnn")
        runs.append({"run": path.stem, **effective})
    return runs


def configuration(run: dict) -> tuple[int, int, int]:
    """What sets a run's cost per image: image size, filter size, extra layers."""
    return run["image_size"], run["filter"], run.get("layers_to_add", 0)


def train_model(size: int, filter_size: int, layers: int):
    model = models.build_custom_cnn(size, filter_size, layers_to_add=layers)
    models.compile_model(model, "RMSprop", 1e-3, "binary_crossentropy")
    return model


def random_data(images: int, size: int, batch: int):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, size, size, 3)).astype("uint8")
    y = rng.integers(0, 2, (images, 1)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).map(lambda a, b: (tf.cast(a, "float32"), b))


def one_paper_epoch(run: dict) -> tuple[float, float]:
    """Seconds of one whole training epoch on TRAIN_IMAGES and of scoring VAL_IMAGES, measured."""
    training.seed_everything(0)
    size, filter_size, layers = configuration(run)
    model = train_model(size, filter_size, layers)
    model.fit(random_data(run["batch_size"], size, run["batch_size"]), epochs=1, verbose=0)  # build and trace
    train = random_data(TRAIN_IMAGES, size, run["batch_size"])
    started = time.perf_counter()
    model.fit(train, epochs=1, verbose=0)
    epoch = time.perf_counter() - started
    started = time.perf_counter()
    model.predict(random_data(VAL_IMAGES, size, run["batch_size"]).map(lambda a, b: a), verbose=0)
    return epoch, time.perf_counter() - started


def packed_hours(seconds: list[float], workers: int) -> float:
    """Wall hours of independent runs on ``workers`` workers, longest run first to the least loaded."""
    loads = [0.0] * workers
    for length in sorted(seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + length)
    return max(loads) / 3600


def feature_seconds_per_image(backbone: str, images: int) -> float:
    """Seconds per image of a frozen backbone's forward pass at its size (no ImageNet weights needed)."""
    import keras

    size = BACKBONE_SIZES[backbone]
    builders = {
        "xception": lambda: keras.applications.Xception(weights=None, include_top=False, pooling="avg"),
        "mobilenet025": lambda: keras.applications.MobileNet(
            alpha=0.25, weights=None, include_top=False, pooling="avg"
        ),
        "vgg16": lambda: keras.applications.VGG16(weights=None, include_top=False, pooling="avg"),
        "inceptionv3": lambda: keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg"),
        "densenet169": lambda: keras.applications.DenseNet169(weights=None, include_top=False, pooling="avg"),
    }
    model = builders[backbone]()
    x = np.random.default_rng(0).random((images, size, size, 3), dtype="float32")
    model.predict(x[:8], verbose=0)
    started = time.perf_counter()
    model.predict(x, batch_size=32, verbose=0)
    return (time.perf_counter() - started) / images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100, help="random images per configuration timing")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timing (the first not counted)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--policy", default="auto", choices=("auto", *config.PRECISION_POLICIES))
    parser.add_argument("--gpu-tflops", type=float, default=19.5, help="published float32 peak of the GPU")
    parser.add_argument("--gpu-utilisation", type=float, default=0.4, help="assumed share of that peak")
    parser.add_argument("--backbones", nargs="*", default=list(BACKBONE_SIZES), choices=list(BACKBONE_SIZES))
    parser.add_argument("--skip-epoch", action="store_true", help="do not time run09's whole epoch")
    args = parser.parse_args()

    chosen = precision.choose_policy(args.policy, gpu=False)
    precision.apply_policy(chosen)
    kernels = config.cpu_kernels()
    print(
        f"CPU: {chosen.cpu}; {len(os.sched_getaffinity(0))} cores; policy {chosen.policy} "
        f"({chosen.reason}); kernels {kernels['library']}"
    )
    runs = paper_runs()
    run09 = next(run for run in runs if run["run"] == "run09")

    epoch = None
    if not args.skip_epoch:
        epoch, val = one_paper_epoch(run09)
        print(
            f"\nrun09 at paper scale, measured: one epoch on {TRAIN_IMAGES} images of {run09['image_size']} px "
            f"{epoch:.0f} s; scoring {VAL_IMAGES} val images {val:.0f} s; its {run09['epochs']} epochs would take "
            f"{(epoch + val) * run09['epochs'] / 3600:.1f} h"
        )

    flop_per_image, per_image = {}, {}  # training FLOPs and seconds per image, per configuration
    for key in sorted({configuration(run) for run in runs}):
        size, filter_size, layers = key
        flop_per_image[key], per_image[key] = time_training(
            size, filter_size, args.images, args.epochs, chosen.policy, False, layers
        )
    print(
        f"\n{'run':>6} {'px':>4} {'filter':>6} {'extra':>5} {'epochs':>6} {'s/img':>7} {'GFLOP/img':>9} "
        f"{'projected h':>11}"
    )
    projected, total_flop = [], 0.0
    for run in runs:
        key = configuration(run)
        flop = flop_per_image[key]
        seconds = per_image[key] * (TRAIN_IMAGES + VAL_IMAGES / 3) * run["epochs"]
        projected.append(seconds)
        total_flop += flop * (TRAIN_IMAGES + VAL_IMAGES / 3) * run["epochs"]
        print(
            f"{run['run']:>6} {key[0]:>4} {key[1]:>6} {key[2]:>5} {run['epochs']:>6} {per_image[key]:>7.3f} "
            f"{flop / 1e9:>9.2f} {seconds / 3600:>11.2f}"
        )
    if epoch is not None:
        guess = per_image[configuration(run09)] * TRAIN_IMAGES
        print(
            f"check: run09's training epoch projected {guess:.0f} s, measured {epoch:.0f} s "
            f"(the projections are off by about {guess / epoch:.2f}x; more --images narrows it)"
        )
    print("\nthe grid at paper scale (14 runs, one seed; the seeds and final fits come on top), projected:")
    print(f"  on these 2 cores, one run after another: {sum(projected) / 3600:.1f} h")
    for workers in args.workers:
        print(
            f"  on {workers} Dask workers, each a machine like this: {packed_hours(projected, workers):.1f} h "
            f"(the longest run alone: {max(projected) / 3600:.1f} h)"
        )
    gpu_hours = total_flop / (args.gpu_tflops * 1e12 * args.gpu_utilisation) / 3600
    print(
        f"  on one GPU of {args.gpu_tflops:g} TFLOP/s float32 (published peak) at an assumed "
        f"{args.gpu_utilisation:.0%} of it: {gpu_hours * 60:.0f} min ({total_flop / 1e15:.0f} PFLOP in all; "
        "arithmetic, not a measurement)"
    )

    if args.backbones:
        print(
            f"\nfrozen features for all {ALL_IMAGES} images (the transfer stage's costly part; the head "
            "then trains on cached features):"
        )
        for backbone in args.backbones:
            seconds = feature_seconds_per_image(backbone, 32)
            print(
                f"  {backbone:>12} at {BACKBONE_SIZES[backbone]} px: {seconds * 1e3:.0f} ms/img, "
                f"{seconds * ALL_IMAGES / 60:.1f} min"
            )


if __name__ == "__main__":
    main()
