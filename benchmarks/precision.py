"""float32 vs mixed bfloat16: training speed and val AUC of the custom CNN, and frozen-backbone speed.

    .venv/bin/python benchmarks/precision.py [--data-run default] [--run params/custom/run09.yaml]
        [--epochs 8] [--images 1500] [--seeds 2] [--backbone mobilenet025]

Trains one configuration of the grid (the study's image size and filter scaled as the default
profile scales them) with each precision policy and each seed on the same images, and prints
images per second, the ratio, and the val AUC of every run: the AUC difference between policies
is to be read against the spread between seeds. Then times the frozen backbone's forward pass
both ways. On a CPU without native bfloat16 (no ``amx_bf16`` / ``avx512_bf16`` flag) mixed
bfloat16 is emulated and slower; the script says which CPU it ran on. A script, not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cxr_utils import config, registry  # noqa: E402
from cxr_utils.analysis import evaluation  # noqa: E402
from cxr_utils.data import datasets  # noqa: E402
from cxr_utils.modeling import backbones, experiment, precision, training  # noqa: E402

POLICIES = ("float32", "mixed_bfloat16")


def train_once(policy: str, params: dict, data: experiment.TrainVal, seed: int, folder: Path) -> tuple[float, float]:
    """Images per second of the training epochs after the first, and the kept model's val AUC."""
    import keras

    keras.mixed_precision.set_global_policy(policy)
    training.seed_everything(seed)
    run = {**params, "seed": seed}
    model = experiment.custom_cnn(run)
    train_ds, _, val_ds = experiment.image_datasets(data, run)
    fit = training.fit(model, train_ds, val_ds, epochs=run["epochs"], folder=folder, verbose=0)
    seconds = float(np.median(fit.history["seconds"].iloc[1:])) if len(fit.history) > 1 else fit.seconds
    auc = evaluation.basic_metrics(data.val.y, training.predict(model, val_ds))["auc"]
    return len(data.train.y) / seconds, auc


def forward_rate(policy: str, backbone: str, images: np.ndarray) -> float:
    """Images per second through a frozen backbone at 224 px."""
    import keras

    keras.mixed_precision.set_global_policy(policy)
    extractor = backbones.build_extractor(backbone, backbones.resolve_weights(backbone), 224)
    batch = np.repeat(images[..., None], 3, axis=-1).astype("float32")
    extractor.predict(batch[:8], verbose=0)  # build and trace once
    started = time.perf_counter()
    extractor.predict(batch, batch_size=32, verbose=0)
    return len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-run", default="default")
    parser.add_argument("--run", default="params/custom/run09.yaml")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--backbone", default="mobilenet025")
    args = parser.parse_args()
    cpu = precision.choose_policy("auto")
    print(f"CPU: {cpu.cpu}; native bfloat16 flags: {', '.join(cpu.bf16_flags) or 'none'}; auto policy: {cpu.policy}")
    params, _ = config.apply_profile(
        {**config.load_params_file(args.run), "profile": "default"}, "default", registry.CUSTOM_CNN.stem
    )
    params.update(
        epochs=args.epochs, max_train_images=args.images, max_val_images=None, data_run=args.data_run, manifest=None
    )
    data = experiment.load_train_val(params)
    print(
        f"{Path(args.run).stem} at {params['image_size']} px, filter {params['filter']}, {len(data.train.y)} training "
        f"and {len(data.val.y)} val images, {args.epochs} epochs"
    )
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for policy in POLICIES:
            for seed in range(args.seeds):
                rate, auc = train_once(policy, params, data, 20201125 + seed, Path(tmp) / f"{policy}-{seed}")
                rates.setdefault(policy, []).append(rate)
                print(f"  {policy:<15} seed {seed}: {rate:7.1f} img/s, val AUC {auc:.3f}")
    ratio = np.median(rates["mixed_bfloat16"]) / np.median(rates["float32"])
    print(f"training speed, mixed_bfloat16 / float32: {ratio:.2f}x")
    sample = datasets.load_split(
        datasets.read_manifest(registry.manifest_file(args.data_run)),
        "val",
        224,
        root=config.data_root(),
        max_images=96,
    ).x
    forward = {policy: forward_rate(policy, args.backbone, sample) for policy in POLICIES}
    print(
        f"frozen {args.backbone} forward at 224 px: "
        + ", ".join(f"{p} {r:.1f} img/s" for p, r in forward.items())
        + f" ({forward['mixed_bfloat16'] / forward['float32']:.2f}x)"
    )


if __name__ == "__main__":
    main()
