"""The custom CNN's training speed against the CPU's limit: achieved GFLOP/s and the share of peak.

    .venv/bin/python benchmarks/flops.py [--size 64] [--filters 3 5 8 12] [--images 500] [--epochs 3]
        [--policy float32|mixed_bfloat16] [--flop-per-cycle N] [--ghz G]

For each filter size of the grid, at the default profile's image size, it counts the training
FLOPs per image from the model itself (every Conv2D and Dense layer: 2 x multiply-adds of the
forward pass, and twice that again for the backward pass, the usual 3x), times training on random
images of that size (the epochs after the first, with the study's batch of 50 and RMSprop), and
prints the achieved GFLOP/s and its share of the machine's float32 peak. The peak is cores x
FLOP per cycle x clock, each printed with where it came from: cores from the process's CPU
affinity, the clock from /proc/cpuinfo (``cpu MHz``, the current clock, not a boost clock), and
FLOP per cycle assumed from the vector flags (2 FMA units of 8 float32 lanes with AVX2 and on
AMD's AVX-512, which splits 512-bit work in two; 2 units of 16 lanes on Intel's AVX-512), to be
overridden where the CPU is known better. State the CPU beside the numbers; compare only within
one run. A script, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cxr_utils.modeling import models, precision, training  # noqa: E402


def forward_flops(model) -> int:
    """FLOPs of one image's forward pass through the Conv2D and Dense layers (2 per multiply-add)."""
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, height, width, out_channels = layer.output.shape
            kernel_h, kernel_w, in_channels, _ = layer.kernel.shape
            total += 2 * height * width * out_channels * kernel_h * kernel_w * in_channels
        elif kind == "Dense":
            in_units, out_units = layer.kernel.shape
            total += 2 * in_units * out_units
    return int(total)


def peak(flop_per_cycle: float | None, ghz: float | None) -> tuple[float, str]:
    """The float32 peak in GFLOP/s and how it was derived."""
    cpu, flags = precision.cpu_description()
    cores = len(os.sched_getaffinity(0))
    if ghz is None:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        mhz = [float(line.split(":")[1]) for line in lines if line.startswith("cpu MHz")]
        ghz = max(mhz) / 1000 if mhz else float("nan")
        clock = f"{ghz:.2f} GHz (/proc/cpuinfo cpu MHz, current clock)"
    else:
        clock = f"{ghz:.2f} GHz (given)"
    if flop_per_cycle is None:
        intel_avx512 = "avx512f" in flags and "AMD" not in cpu
        lanes = 16 if intel_avx512 else 8 if "avx2" in flags else 4
        flop_per_cycle = 2 * lanes * 2
        how = f"2 FMA units x {lanes} float32 lanes x 2 FLOP (assumed from the flags; --flop-per-cycle to set)"
    else:
        how = "given"
    value = cores * flop_per_cycle * ghz
    return value, f"{cores} cores x {flop_per_cycle:g} FLOP/cycle [{how}] x {clock} = {value:.0f} GFLOP/s"


def time_training(size: int, filter_size: int, images: int, epochs: int, policy: str) -> tuple[float, float]:
    """Training FLOPs per image and seconds per image (median of the epochs after the first)."""
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(policy)
    training.seed_everything(0)
    model = models.build_custom_cnn(size, filter_size)
    models.compile_model(model, "RMSprop", 1e-3, "binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, size, size, 3)).astype("float32")
    y = rng.integers(0, 2, (images, 1)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(50).cache().prefetch(tf.data.AUTOTUNE)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        seconds.append(time.perf_counter() - started)
    steady = float(np.median(seconds[1:])) if len(seconds) > 1 else seconds[0]
    return 3 * forward_flops(model), steady / images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64, help="image size (the default profile's 256 px / 4)")
    parser.add_argument("--filters", type=int, nargs="+", default=[3, 5, 8, 12])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--policy", default="float32", choices=("float32", "mixed_bfloat16"))
    parser.add_argument("--flop-per-cycle", type=float, default=None)
    parser.add_argument("--ghz", type=float, default=None)
    args = parser.parse_args()
    cpu, flags = precision.cpu_description()
    limit, derivation = peak(args.flop_per_cycle, args.ghz)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "not set")
    print(f"CPU: {cpu}; bf16 flags: {sorted(f for f in flags if 'bf16' in f)}; ONEDNN_MAX_CPU_ISA: {isa}")
    print(f"policy {args.policy}; {args.images} random images of {args.size} px, batch 50, RMSprop")
    print(f"float32 peak: {derivation}")
    print(f"{'filter':>6} {'GFLOP/img':>10} {'ms/img':>8} {'GFLOP/s':>8} {'share of peak':>14}")
    above = False
    for filter_size in args.filters:
        flops, seconds = time_training(args.size, filter_size, args.images, args.epochs, args.policy)
        achieved = flops / seconds / 1e9
        print(f"{filter_size:>6} {flops / 1e9:>10.3f} {seconds * 1e3:>8.2f} {achieved:>8.1f} {achieved / limit:>14.1%}")
        above = above or achieved > limit
    if above:
        print(
            "note: above 100 % of the peak means the clock (or the FLOP per cycle) is higher than assumed: "
            "/proc/cpuinfo's cpu MHz is often a base or a virtual machine's nominal clock; pass --ghz"
        )


if __name__ == "__main__":
    main()
