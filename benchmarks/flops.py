"""The custom CNN's training speed against the CPU's limit: achieved GFLOP/s and the share of peak.

    .venv/bin/python benchmarks/flops.py [--size 64] [--filters 3 5 8 12] [--images 500] [--epochs 3]
        [--policy float32|mixed_bfloat16] [--flop-per-cycle N] [--ghz G] [--jit-compile]
        [--compare-kernels [--repeats 2]]

For each filter size of the grid, at the default profile's image size, it counts the training
FLOPs per image from the model itself (every Conv2D and Dense layer: 2 x multiply-adds of the
forward pass, and twice that again for the backward pass, the usual 3x), times training on random
images of that size (the epochs after the first, with the study's batch of 50 and RMSprop), and
prints the achieved GFLOP/s and its share of the machine's float32 peak. The peak is cores x
FLOP per cycle x clock, each printed with where it came from: cores from the process's CPU
affinity, the clock from /proc/cpuinfo (``cpu MHz``, the current clock, not a boost clock), and
FLOP per cycle assumed from the vector flags (2 FMA units of 8 float32 lanes with AVX2 and on
AMD's AVX-512, which splits 512-bit work in two; 2 units of 16 lanes on Intel's AVX-512), to be
overridden where the CPU is known better. Beside it, the achievable rate: a 2048 x 2048 float32
matrix product in TensorFlow, measured. ``--jit-compile`` trains under XLA.

``--compare-kernels`` times each filter size in fresh processes with TensorFlow's two CPU kernel
libraries, Eigen (``TF_ENABLE_ONEDNN_OPTS=0``, TensorFlow's default on CPUs without VNNI, BF16 or
AMX, such as AVX2-only EPYCs) and oneDNN (``=1``, what ``cxr_utils`` now sets where the variable
is unset), alternating them ``--repeats`` times and keeping each one's fastest. With
``ONEDNN_MAX_CPU_ISA=AVX2`` in the environment oneDNN uses only AVX2 instructions, as on such a
CPU (Eigen's kernels are compiled for AVX2 in TensorFlow's wheels either way).

State the CPU beside the numbers; compare only within one run. A script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cxr_utils import config  # noqa: E402
from cxr_utils.modeling import models, training  # noqa: E402


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
    cpu, flags = config.cpu_description()
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


def time_training(
    size: int, filter_size: int, images: int, epochs: int, policy: str, jit_compile: bool, layers_to_add: int = 0
) -> tuple[float, float]:
    """Training FLOPs per image and seconds per image (median of the epochs after the first)."""
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(policy)
    training.seed_everything(0)
    model = models.build_custom_cnn(size, filter_size, layers_to_add=layers_to_add)
    models.compile_model(model, "RMSprop", 1e-3, "binary_crossentropy")
    model.jit_compile = jit_compile
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


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The achievable float32 rate: GFLOP/s of an n x n matrix product in TensorFlow (best of repeats)."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.linalg.matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def timed_in_fresh_process(filter_size: int, onednn: str, args: argparse.Namespace) -> dict:
    """One filter size timed in a new Python process with TF_ENABLE_ONEDNN_OPTS=onednn."""
    command = [sys.executable, __file__, "--json", "--filters", str(filter_size), "--size", str(args.size)]
    command += ["--images", str(args.images), "--epochs", str(args.epochs), "--policy", args.policy]
    env = {**os.environ, config.ONEDNN_ENV: onednn, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_kernels(args: argparse.Namespace) -> None:
    """Eigen against oneDNN for each filter size, each the fastest of ``args.repeats`` fresh processes."""
    print(
        f"{'filter':>6} {'Eigen ms/img':>12} {'oneDNN ms/img':>13} {'speed-up':>8} {'Eigen GFLOP/s':>13} "
        f"{'oneDNN GFLOP/s':>14} {'oneDNN share of matmul':>22}"
    )
    for filter_size in args.filters:
        best = {"0": float("inf"), "1": float("inf")}
        for _ in range(args.repeats):
            for onednn in ("0", "1"):
                timed = timed_in_fresh_process(filter_size, onednn, args)
                best[onednn] = min(best[onednn], timed["seconds_per_image"])
                flops, matmul = timed["flops_per_image"], timed["matmul_gflops"]
        eigen, onednn_s = best["0"], best["1"]
        print(
            f"{filter_size:>6} {eigen * 1e3:>12.2f} {onednn_s * 1e3:>13.2f} {eigen / onednn_s:>8.2f} "
            f"{flops / eigen / 1e9:>13.1f} {flops / onednn_s / 1e9:>14.1f} {flops / onednn_s / 1e9 / matmul:>22.1%}"
        )
    print("matmul: the last process's 2048 x 2048 float32 product (oneDNN on)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64, help="image size (the default profile's 256 px / 4)")
    parser.add_argument("--filters", type=int, nargs="+", default=[3, 5, 8, 12])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--policy", default="float32", choices=("float32", "mixed_bfloat16"))
    parser.add_argument("--flop-per-cycle", type=float, default=None)
    parser.add_argument("--ghz", type=float, default=None)
    parser.add_argument("--jit-compile", action="store_true", help="compile training with XLA")
    parser.add_argument("--compare-kernels", action="store_true", help="Eigen against oneDNN, fresh processes")
    parser.add_argument("--repeats", type=int, default=2, help="processes per kernel library (--compare-kernels)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one filter, for --compare-kernels
    args = parser.parse_args()
    if args.json:
        flops, seconds = time_training(args.size, args.filters[0], args.images, args.epochs, args.policy, False)
        print(json.dumps({"flops_per_image": flops, "seconds_per_image": seconds, "matmul_gflops": matmul_gflops()}))
        return
    cpu, flags = config.cpu_description()
    limit, derivation = peak(args.flop_per_cycle, args.ghz)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "not set")
    print(f"CPU: {cpu}; bf16 flags: {sorted(f for f in flags if 'bf16' in f)}; ONEDNN_MAX_CPU_ISA: {isa}")
    print(f"policy {args.policy}; {args.images} random images of {args.size} px, batch 50, RMSprop")
    print(f"float32 peak: {derivation}")
    if args.compare_kernels:
        compare_kernels(args)
        return
    kernels = config.cpu_kernels()
    print(
        f"kernels: {kernels['library']} (TensorFlow's own default on this CPU: "
        f"{kernels['tensorflow_default_on_this_cpu']}); XLA: {'on' if args.jit_compile else 'off'}"
    )
    achievable = matmul_gflops()
    print(f"achievable: a 2048 x 2048 float32 matmul at {achievable:.0f} GFLOP/s")
    print(f"{'filter':>6} {'GFLOP/img':>10} {'ms/img':>8} {'GFLOP/s':>8} {'share of peak':>14} {'of matmul':>10}")
    above = False
    for filter_size in args.filters:
        flops, seconds = time_training(args.size, filter_size, args.images, args.epochs, args.policy, args.jit_compile)
        achieved = flops / seconds / 1e9
        print(
            f"{filter_size:>6} {flops / 1e9:>10.3f} {seconds * 1e3:>8.2f} {achieved:>8.1f} {achieved / limit:>14.1%} "
            f"{achieved / achievable:>10.1%}"
        )
        above = above or achieved > limit
    if above:
        print(
            "note: above 100 % of the peak means the clock (or the FLOP per cycle) is higher than assumed: "
            "/proc/cpuinfo's cpu MHz is often a base or a virtual machine's nominal clock; pass --ghz"
        )


if __name__ == "__main__":
    main()
