"""Benchmark: a frozen-backbone run the study's way vs with features computed once.

    .venv/bin/python benchmarks/feature_cache.py [--backbone mobilenet025] [--images 300] [--epochs 30]

On the same training images, machine and head (GAP + Dense(2, softmax), Adam 1e-4):

- study's way: the frozen backbone sits in the training loop, so every epoch runs every image
  through it again;
- this project's way: one pass of the backbone over the images (features written to an empty
  cache folder, so the pass is really computed), then the head's epochs on the vectors.

Prints both wall times and their ratio. Not a test; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cxr_utils import config, registry  # noqa: E402
from cxr_utils.data import datasets
from cxr_utils.modeling import backbones, features, training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="mobilenet025")
    parser.add_argument("--images", type=int, default=300, help="class-balanced training images")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--data-run", default="default")
    args = parser.parse_args()

    weights = backbones.resolve_weights(args.backbone)
    manifest = datasets.read_manifest(registry.manifest_file(args.data_run))
    train = datasets.load_split(
        manifest, "train", args.size, root=config.data_root(), max_images=args.images, balanced=True, seed=1
    )
    n = len(train.y)
    print(
        f"{args.backbone} ({weights.label}), {n} images at {args.size} px, {args.epochs} epochs, "
        f"batch {args.batch_size}"
    )

    training.seed_everything(1)
    extractor = backbones.build_extractor(args.backbone, weights, args.size)
    extractor.trainable = False
    study_model = features.end_to_end(extractor, features.build_head(extractor.output_shape[-1]))
    features.compile_head(study_model, 1e-4)
    images = datasets.make_dataset(train, batch_size=args.batch_size, shuffle_seed=1, one_hot=True)
    started = time.perf_counter()
    study_model.fit(images, epochs=args.epochs, verbose=0)
    study_seconds = time.perf_counter() - started

    training.seed_everything(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        vectors = features.extract(extractor, train.x, train.rows["sha256"].tolist(), Path(tmp) / "features")
    extract_seconds = time.perf_counter() - started
    head = features.build_head(extractor.output_shape[-1])
    features.compile_head(head, 1e-4)
    head.fit(features.feature_dataset(vectors.features, train.y, args.batch_size, 1), epochs=args.epochs, verbose=0)
    ours_seconds = time.perf_counter() - started

    print(f"study's way (backbone in every epoch): {study_seconds:8.1f} s")
    print(
        f"features once + {args.epochs} head epochs:   {ours_seconds:8.1f} s "
        f"(feature pass {extract_seconds:.1f} s, {vectors.computed} images)"
    )
    print(f"ratio: {study_seconds / ours_seconds:.1f}x  (cpu_count={os.cpu_count()})")


if __name__ == "__main__":
    main()
