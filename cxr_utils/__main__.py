"""Command line: ``python -m cxr_utils run | pipeline | predict | book | report export | weights provision |
lungs | data download | course student``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from . import config, registry
from .data import download, sources
from .modeling import provision
from .runs import pipeline as main_job
from .runs import runner, storage


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cxr_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute a notebook once per params file (papermill)")
    run.add_argument("notebook", help="e.g. notebooks/01_data_merge.ipynb")
    run.add_argument("params", nargs="+", help="flat YAML params files; one run each")
    run.add_argument(
        "--profile", default="default", help=f"scale the runs to the machine ({', '.join(config.available_profiles())})"
    )
    run.add_argument("--out", default=None, help="output root (default: CXR_OUTPUT_DIR or outputs/)")
    run.add_argument("--force", action="store_true", help="redo runs that already have a complete result")
    run.add_argument("--kernel", default=None, help="Jupyter kernel (default: the notebook's own)")
    _executor_options(run)

    pipeline = sub.add_parser("pipeline", help="the main job: every stage in order (make report)")
    pipeline.add_argument("--profile", default="default")
    pipeline.add_argument(
        "--out", default=None, help="output root of every stage (default: CXR_OUTPUT_DIR or outputs/)"
    )
    pipeline.add_argument("--force", action="store_true")
    pipeline.add_argument(
        "--report-dir", default=None, help="where the report is exported (default: report/, or <out>/report with --out)"
    )
    pipeline.add_argument(
        "--no-provision",
        action="store_true",
        help=(
            "do not provision Xception weights first, nor the frozen features (local workers) before the "
            "transfer stage, nor the lung model before the shortcut stage"
        ),
    )
    _executor_options(pipeline)

    data = sub.add_parser("data", help="data commands")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    dl = data_sub.add_parser("download", help="fetch the sources (needs internet)")
    dl.add_argument("--root", default=None, help="data root (default: as everywhere else, see README)")
    dl.add_argument("--sources", nargs="+", default=list(sources.SOURCES), choices=sources.SOURCES)
    dl.add_argument("--latest", action="store_true", help="keep upstream HEAD instead of the mirrored commits")
    dl.add_argument("--git-base", default=download.GITHUB, help=argparse.SUPPRESS)

    pred = sub.add_parser("predict", help="score your own X-ray(s) with the models the latest build made")
    pred.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    pred.add_argument(
        "--model",
        nargs="+",
        default=["custom", "transfer"],
        choices=["custom", "transfer"],
        help="which of the build's models (default: both)",
    )
    pred.add_argument(
        "--out",
        default=None,
        help="folder for predictions.csv, saliency/ and contact_sheet.png "
        "(default: <output root>/08_predict/cli-<time>)",
    )
    pred.add_argument("--out-root", default=None, help="the build's output root (default: CXR_OUTPUT_DIR or outputs/)")
    pred.add_argument("--comparison-run", default="comparison", help="the 04_comparison run naming the models")
    pred.add_argument("--no-saliency", action="store_true", help="skip the Grad-CAM overlays")

    course = sub.add_parser("course", help="teaching commands")
    course_sub = course.add_subparsers(dest="course_command", required=True)
    student = course_sub.add_parser(
        "student", help="write the student edition (otter assign) and each notebook's autograder"
    )
    student.add_argument("--dest", default=str(config.PROJECT_ROOT / "student"), help="folder (default: student/)")
    student.add_argument(
        "--key", default=None, help="folder for the autograders (default: <output root>/grading/); never in --dest"
    )
    grade = course_sub.add_parser("grade", help="grade filled-in student notebooks: points per exercise")
    grade.add_argument("notebooks", nargs="+", help="student notebooks (named as in notebooks/)")
    grade.add_argument("--key", default=None, help="folder holding the autograders (default: <output root>/grading/)")

    book = sub.add_parser("book", help="build the course website (Jupyter Book) from a build's executed notebooks")
    book.add_argument("--out-root", default=None, help="the build's output root (default: CXR_OUTPUT_DIR or outputs/)")
    book.add_argument("--dest", default=None, help="where the sources and the site go (default: <out-root>/book)")

    rep = sub.add_parser("report", help="report commands")
    rep_sub = rep.add_subparsers(dest="report_command", required=True)
    export = rep_sub.add_parser("export", help="write report.html, figures/ and tables/ from a 07_report run")
    export.add_argument("--run", default="report", help="the 07_report run (default: report)")
    export.add_argument("--dest", default=str(registry.REPORT_DIR), help="folder (default: report/)")
    export.add_argument(
        "--out", default=None, help="output root holding the runs (default: CXR_OUTPUT_DIR or outputs/)"
    )

    weights = sub.add_parser("weights", help="weights commands")
    weights_sub = weights.add_subparsers(dest="weights_command", required=True)
    prov = weights_sub.add_parser("provision", help="provision ImageNet weights offline (xception)")
    prov.add_argument("backbone", help="xception")
    prov.add_argument("--wheel", default=None, help="a local pneumonia_model_package-0.3.0 wheel (else pip download)")
    prov.add_argument(
        "--dest", default=None, help="weights folder (default: CXR_WEIGHTS_DIR when set, else <output root>/weights/)"
    )

    lungs = sub.add_parser(
        "lungs", help="provision the lung segmentation model (trained once, cached) and print its Dice/IoU"
    )
    lungs.add_argument(
        "--out", default=None, help="output root whose cache/lungs/ holds it (default: CXR_OUTPUT_DIR or outputs/)"
    )
    lungs.add_argument("--root", default=None, help="data root holding lung-masks/ (default: as everywhere else)")
    lungs.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the intervals (default 1000)")
    lungs.add_argument(
        "--profile", default="default", help="whose lung_unet settings (notebooks.05_shortcuts.set; default: default)"
    )
    return parser


def _executor_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("executor", "where the runs go (README: Running on a cluster)")
    group.add_argument(
        "--executor", choices=("sequential", "dask"), default="sequential", help="one after another, or Dask tasks"
    )
    group.add_argument("--scheduler", default=None, help="dask: a running scheduler's address, e.g. tls://host:8786")
    group.add_argument("--workers", type=int, default=None, help="dask: start N local workers (127.0.0.1 only)")
    group.add_argument("--gpus-per-run", type=int, default=0, help="dask: GPUs (worker resource GPU) each run holds")
    group.add_argument("--tls-ca-file", default=None, help="dask: CA certificate of the scheduler's TLS")
    group.add_argument("--tls-cert", default=None, help="dask: this client's TLS certificate")
    group.add_argument("--tls-key", default=None, help="dask: this client's TLS private key")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="skip a run whose folder another batch is writing (default: wait for it, then skip it if complete)",
    )


def _executor(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """A context yielding the Dask executor the options ask for, or None (sequential)."""
    tls = (args.tls_ca_file, args.tls_cert, args.tls_key)
    if args.executor == "sequential":
        if args.scheduler or args.workers or args.gpus_per_run or any(tls):
            raise config.ConfigError("--scheduler, --workers, --gpus-per-run and --tls-* need --executor dask")
        return contextlib.nullcontext()
    if any(tls) and not all(tls):
        raise config.ConfigError("TLS needs all of --tls-ca-file, --tls-cert and --tls-key")
    from .runs.distributed import DaskExecutor

    return DaskExecutor(args.scheduler, args.workers, args.gpus_per_run, tls if all(tls) else None)


def _course(args: argparse.Namespace) -> int:
    from . import course

    if args.course_command == "student":
        for path in course.student_edition(args.dest, args.key):
            print(path)
        print(f"autograders (the instructor's key; do not hand out): {args.key or course.key_folder()}")
        return 0
    for notebook in args.notebooks:
        rows = course.grade(notebook, args.key)
        print(f"{notebook}:")
        for row in rows:
            points = "graded by the instructor" if row["points"] is None else f"{row['points']:g} / {row['possible']:g}"
            print(f"  {row['question']:<18} {points}")
        scored = [r for r in rows if r["points"] is not None]
        total, possible = sum(r["points"] for r in scored), sum(r["possible"] for r in scored)
        print(f"  {'autograded total':<18} {total:g} / {possible:g}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            with _executor(args) as executor:
                outcomes = runner.run_batch(
                    args.notebook,
                    args.params,
                    profile=args.profile,
                    out=args.out,
                    force=args.force,
                    kernel=args.kernel,
                    executor=executor,
                    wait=not args.no_wait,
                )
            return 1 if any(o.status == "failed" for o in outcomes) else 0
        if args.command == "course":
            return _course(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "book":
            from . import book as course_book

            return course_book.main(args.out_root, args.dest)
        if args.command == "report":
            from .reporting.export import export_run

            print(export_run(args.run, args.dest, args.out))
            return 0
        if args.command == "lungs":
            return _lungs(args)
        if args.command == "weights":
            provision.provision(args.backbone, wheel=args.wheel, dest=args.dest)
            return 0
        if args.command == "pipeline":
            report_dir = args.report_dir or (f"{args.out}/report" if args.out else registry.REPORT_DIR)
            with _executor(args) as executor:
                ok = main_job.run_pipeline(
                    profile=args.profile,
                    out=args.out,
                    force=args.force,
                    export_to=report_dir,
                    provision=() if args.no_provision else main_job.PROVISIONED,
                    executor=executor,
                    wait=not args.no_wait,
                )
            return 0 if ok else 1
        root, _ = config.data_root_setting(args.root)
        download.download(args.sources, root, git_base=args.git_base, latest=args.latest)
        return 0
    except (config.ConfigError, download.DownloadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except storage.StorageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a storage error outside a run (e.g. writing the report): one line, no traceback
        problem = storage.storage_errno(err)
        if problem is None:
            raise
        print(
            f"error: {storage.explain(*problem, f'the {args.command} command stopped', err.filename or '.')}",
            file=sys.stderr,
        )
        return 1


def _predict(args: argparse.Namespace) -> int:
    """``predict``: score the inputs, write the files, print one line per image and model."""
    from datetime import datetime

    from . import predict

    root = args.out_root or config.output_root()
    models = predict.load_models(args.comparison_run, tuple(args.model), root)
    out = args.out or registry.PREDICT.run_folder(f"cli-{datetime.now():%Y%m%d-%H%M%S}", root)
    with runner.output_root_for_kernels(Path(root).resolve()):
        reference = predict.reference_for(models)
        lung = predict.lung_field(root, profile=models[0].result.get("profile")) if not args.no_saliency else None
        table = predict.predict(args.inputs, models, reference, out, saliency_maps=not args.no_saliency, lung=lung)
    note = predict.caveat(root)
    predict.write_provenance(models, reference, out, note, lung)
    print(note)
    if lung is not None:
        print(f"lungs outlined on the overlays, and Grad-CAM's share inside them: {lung.description}")
    for row in table.itertuples():
        if row.error:
            print(f"{row.path}: not scored ({row.error})")
        else:
            flag = "  OUT OF DISTRIBUTION" if row.ood_flag else ""
            lungs_line = f"; Grad-CAM in lungs {row.lung_share:.0%} ({row.lung_mask})" if row.lung_mask else ""
            print(f"{row.path}: {row.model} P(COVID-19) = {row.probability:.3f} -> {row.decision}{flag}{lungs_line}")
    print(f"written to {out} (predictions.csv, saliency/, contact_sheet.png, provenance.json)")
    return 0


def _lungs(args: argparse.Namespace) -> int:
    """``lungs``: provision the model (trained when not cached), then measure it on JSRT and the held-back images."""
    import time

    from .analysis import lungs

    started = time.perf_counter()
    cache = Path(args.out).resolve() / "cache" if args.out else config.cache_dir()
    path = lungs.provision(cache, lungs.profile_settings(args.profile), root=args.root, verbose=2)
    provision_seconds = time.perf_counter() - started
    measured = lungs.measure(path, args.root, n_boot=args.n_boot)
    record = measured["training"]
    size = path.stat().st_size / 1e6
    print(f"model: {path} ({size:.2f} MB)")
    print(
        f"trained in {record['train_seconds']:.0f} s ({record['epochs_run']} epochs, best {record['best_epoch']}, "
        f"stopped by {record['stopped_by']}) on {record['train_images']} images at {record['settings']['size']} px, "
        f"{record['cpu']} x{record['cores']}, {record['policy']}; this call took {provision_seconds:.0f} s"
    )
    for name, label in (("jsrt", "JSRT (independent)"), ("held_back", "held-back Montgomery/Shenzhen")):
        part = measured[name]
        dice, iou = part["dice"], part["iou"]
        print(
            f"{label}, n={dice['n']}: Dice {dice['value']:.3f} [{dice['low']:.3f}, {dice['high']:.3f}], "
            f"IoU {iou['value']:.3f} [{iou['low']:.3f}, {iou['high']:.3f}] (95 % bootstrap over images); "
            f"{part['flagged']['count']} flagged; measured in {part['seconds']:.0f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
