"""The Dask executor on loopback clusters: the sequential runner's results, a worker that dies, a
worker without the data root, one task per folder at a time, a shared cold image cache, GPU slots."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import random
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

import dask
import numpy as np
import psutil
import pytest
from conftest import params_file, pattern, save, write_probe_notebook
from distributed import Client, LocalCluster

from cxr_utils import __main__ as cli
from cxr_utils import config, registry, results
from cxr_utils.data import images
from cxr_utils.runs import claim, distributed, pipeline, runner

PARAMETERS = """run_name: str = "t"  # run name
output_dir: Optional[str] = None  # run folder
profile: str = "smoke"  # profile
value: int = 1  # a number to double
sleep: float = 0.0  # seconds the run takes
log: Optional[str] = None  # append "run worker-pid start end" to this file when done
kill_worker_once: Optional[str] = None  # kill the worker (the kernel's parent) unless this marker exists"""

BODY = """import os, signal, time
from pathlib import Path
from cxr_utils import results
params = dict(
    run_name=run_name, output_dir=output_dir, profile=profile, value=value, sleep=sleep, log=log,
    kill_worker_once=kill_worker_once,
)
run = results.start_run("probe", "test", params, params, {}, Path(output_dir))
started = time.time()
if kill_worker_once and not Path(kill_worker_once).exists():
    Path(kill_worker_once).touch()
    os.kill(os.getppid(), signal.SIGKILL)
    os._exit(1)
time.sleep(sleep)
if log:
    with open(log, "a") as handle:
        handle.write(f"{run_name} {os.getppid()} {started} {time.time()}\\n")
run.record(metrics={"double": value * 2})
run.complete()"""


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    """A notebook that doubles a value, and on request waits, logs, or kills its worker once."""
    return write_probe_notebook(tmp_path / "probe.ipynb", PARAMETERS, BODY)


def logged(log: Path) -> list[tuple[str, str, float, float]]:
    """The probe's log: (run, worker pid, start, end) per finished run."""
    rows = [line.split() for line in log.read_text().splitlines()]
    return [(run, pid, float(start), float(end)) for run, pid, start, end in rows]


def overlapping(intervals: list[tuple[float, float]]) -> bool:
    ordered = sorted(intervals)
    return any(later[0] < earlier[1] for earlier, later in zip(ordered, ordered[1:]))


@pytest.mark.slow
def test_a_dask_batch_gives_the_sequential_results_and_resumes(probe, tmp_path, capsys):
    files = [params_file(tmp_path, f"run{v}", f"value: {v}\n") for v in (1, 2, 3)]
    sequential = runner.run_batch(probe, files, profile="smoke", out=tmp_path / "seq")
    out = tmp_path / "dask"
    args = ["run", str(probe), *map(str, files), "--profile", "smoke", "--out", str(out)]
    assert cli.main([*args, "--executor", "dask", "--workers", "2"]) == 0
    assert [o.status for o in sequential] == ["complete"] * 3
    for path in files:
        alone = results.read_result(tmp_path / "seq" / "probe" / path.stem)
        parallel = results.read_result(out / "probe" / path.stem)
        assert parallel["status"] == "complete" and parallel["metrics"] == alone["metrics"]
        assert parallel["requested"]["value"] == alone["requested"]["value"] and parallel["profile"] == "smoke"
        assert parallel["phases"]["wall_with_kernel"] > 0
        share = str(max(1, os.cpu_count() // 2))  # each of the 2 local workers' share of the cores
        assert parallel["provenance"]["thread_limits"] == dict.fromkeys(config.THREAD_ENV, share)
        assert alone["provenance"]["thread_limits"] == config.thread_limits()  # this process's: none set
    printed = capsys.readouterr().out
    assert "[2/3] probe/run2: running (profile smoke) on tcp://127.0.0.1:" in printed
    assert "[2/3] probe/run2: complete in" in printed and "3 complete, 0 done before" in printed
    with distributed.DaskExecutor(workers=1) as executor:
        again = runner.run_batch(probe, files, profile="smoke", out=out, executor=executor)
    assert [o.status for o in again] == ["done before"] * 3


@pytest.mark.slow
def test_a_lone_run_goes_here_with_every_core_rather_than_to_one_of_two_local_workers(probe, tmp_path):
    log = tmp_path / "log.txt"
    lone = [params_file(tmp_path, "lone", f"value: 1\nlog: {log}\n")]
    pair = [params_file(tmp_path, f"pair{v}", f"value: {v}\nlog: {log}\n") for v in (2, 3)]
    here = config.thread_limits()
    with distributed.DaskExecutor(workers=2) as executor:
        for files in (lone, pair):
            outcomes = runner.run_batch(probe, files, profile="smoke", out=tmp_path / "out", executor=executor)
            assert [o.status for o in outcomes] == ["complete"] * len(files)
        assert config.thread_limits() == here  # Dask's nannies left this process's environment alone
    parents = {run: int(pid) for run, pid, _, _ in logged(log)}  # the kernel's parent: this process, or a worker
    assert parents["lone"] == os.getpid()
    assert os.getpid() not in (parents["pair2"], parents["pair3"])
    limits = {
        run: results.read_result(tmp_path / "out" / "probe" / run)["provenance"]["thread_limits"] for run in parents
    }
    assert limits["lone"] == here  # every core, as one after another
    assert limits["pair2"] == limits["pair3"] == dict.fromkeys(config.THREAD_ENV, str(max(1, os.cpu_count() // 2)))


def test_the_local_cluster_listens_on_loopback_only():
    with distributed.DaskExecutor(workers=2) as executor:
        scheduler = executor.client.scheduler.address
        processes = [psutil.Process(), *psutil.Process().children(recursive=True)]  # scheduler, nannies, workers
        listening = [c.laddr.ip for p in processes for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert ipaddress.ip_address(urlparse(scheduler).hostname).is_loopback, scheduler
    assert len(listening) >= 5 and all(ipaddress.ip_address(ip).is_loopback for ip in listening), listening


def test_executor_options_are_checked(probe, tmp_path, capsys):
    path = params_file(tmp_path, "run", "value: 1\n")
    base = ["run", str(probe), str(path), "--out", str(tmp_path / "out")]
    assert cli.main([*base, "--workers", "2"]) == 2
    assert cli.main([*base, "--executor", "dask"]) == 2
    assert cli.main([*base, "--executor", "dask", "--scheduler", "tls://h:8786", "--tls-cert", "c.pem"]) == 2
    err = capsys.readouterr().err
    assert "need --executor dask" in err and "either --scheduler ADDRESS or --workers N" in err
    assert "TLS needs all of" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_run_whose_worker_dies_is_run_again_once(probe, tmp_path, capsys):
    log, marker = tmp_path / "log.txt", tmp_path / "killed-once"
    files = [
        params_file(tmp_path, "victim", f"value: 5\nlog: {log}\nkill_worker_once: {marker}\n"),
        params_file(tmp_path, "bystander", f"value: 6\nlog: {log}\n"),
    ]
    out = tmp_path / "out"
    short_leases = {  # the dead worker's lock on the folder expires in seconds, not the default 30
        "distributed.scheduler.locks.lease-timeout": "2s",
        "distributed.scheduler.locks.lease-validation-interval": "0.5s",
    }
    with dask.config.set(short_leases), distributed.DaskExecutor(workers=2) as executor:
        outcomes = runner.run_batch(probe, files, profile="smoke", out=out, executor=executor)
    assert marker.exists() and [o.status for o in outcomes] == ["complete", "complete"]
    assert sorted(run for run, *_ in logged(log)) == ["bystander", "victim"]  # each finished once
    assert results.read_result(out / "probe" / "victim")["metrics"] == {"double": 10}
    dead = results.read_result(out / "probe" / "victim.previous")  # the attempt that died, set aside
    assert dead["status"] == "running" and not results.is_complete(out / "probe" / "victim.previous")
    assert "probe/victim: running (profile smoke) on tcp://127.0.0.1:" in capsys.readouterr().out


@pytest.mark.slow
def test_a_worker_without_the_data_root_fails_the_run_naming_it(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "no-data-here"
    monkeypatch.setenv(config.DATA_ROOT_ENV, str(missing))  # the workers inherit it
    out = tmp_path / "out"
    stage = pipeline.Stage("data merge", registry.DATA_MERGE, "params/data/smoke.yaml")
    with distributed.DaskExecutor(workers=1) as executor:
        ok = pipeline.run_pipeline([stage], profile="smoke", out=out, export_to=None, executor=executor)
    printed = capsys.readouterr().out
    assert not ok and "[1/1] 01_data_merge/smoke: failed in 0.0 s: worker tcp://127.0.0.1:" in printed
    recorded = results.read_result(out / "01_data_merge" / "smoke")
    assert recorded["status"] == "failed" and f"data root {missing}" in recorded["error"]
    assert not (out / "01_data_merge" / "smoke" / runner.EXECUTED_NOTEBOOK).exists()  # papermill never started


def test_a_worker_must_see_the_output_root_data_root_and_the_weights_the_client_found(tmp_path, monkeypatch):
    weights, out = tmp_path / "weights.h5", tmp_path / "out"
    weights.write_bytes(b"weights")
    out.mkdir()
    monkeypatch.setenv(config.DATA_ROOT_ENV, str(tmp_path))
    run = ("mobilenet", {"backbone": "mobilenet025", "weights_path": str(weights)})
    [job] = distributed.make_jobs(registry.TRANSFER.path, [run], out, "smoke", None)
    assert job.reads_data and job.weights == ("mobilenet025", str(weights)) and job.notebook.startswith("notebooks/")
    assert distributed.missing_here(job) == ""
    weights.unlink()
    assert f"weights_path {weights} for mobilenet025 does not exist" in distributed.missing_here(job)
    monkeypatch.setenv(config.DATA_ROOT_ENV, str(tmp_path / "nowhere"))
    assert f"data root {tmp_path / 'nowhere'}" in distributed.missing_here(job)
    elsewhere = dataclasses.replace(job, base=tmp_path / "gone")
    assert f"output root {tmp_path / 'gone'} is missing" in distributed.missing_here(elsewhere)
    [random_init] = distributed.make_jobs(registry.TRANSFER.path, [("none", {"weights": "none"})], out, "smoke", None)
    assert random_init.weights is None  # nothing to check: the run uses no weights


def test_a_worker_finds_the_weights_provisioned_into_the_batchs_output_root(tmp_path, monkeypatch):
    out = tmp_path / "out"
    provisioned = out / "weights" / "xception_imagenet_notop.weights.h5"  # as `pipeline --out` provisions it
    provisioned.parent.mkdir(parents=True)
    provisioned.write_bytes(b"xception")
    monkeypatch.delenv(config.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setenv(config.OUTPUT_DIR_ENV, str(tmp_path / "the-workers-own"))  # a worker started outside the batch
    with runner.output_root_for_kernels(out):  # the client, as in run_batch
        [job] = distributed.make_jobs(registry.TRANSFER.path, [("x", {"backbone": "xception"})], out, "smoke", None)
    assert job.weights == ("xception", None)
    assert distributed.missing_here(job) == ""
    provisioned.unlink()
    assert "no ImageNet weights for backbone 'xception'" in distributed.missing_here(job)


@pytest.mark.slow
def test_two_tasks_for_one_folder_run_one_after_the_other(probe, tmp_path):
    log, out = tmp_path / "log.txt", tmp_path / "out"
    out.mkdir()
    same = ("same", {"value": 1, "sleep": 1.5, "log": str(log)})
    with distributed.DaskExecutor(workers=2) as executor:
        forced = distributed.make_jobs(probe, [same, same], out, "smoke", None, force=True)
        futures = [executor.client.submit(distributed.run_job, job, key=f"job-{i}") for i, job in enumerate(forced)]
        outcomes = executor.client.gather(futures)
        assert [o.status for o in outcomes] == ["complete", "complete"]  # forced: both run, one after the other
        assert not overlapping([(start, end) for *_, start, end in logged(log)])
        assert results.is_complete(out / "probe" / "same") and results.is_complete(out / "probe" / "same.previous")
        plain = distributed.make_jobs(probe, [same, same], out, "smoke", None)
        futures = [executor.client.submit(distributed.run_job, job, key=f"plain-{i}") for i, job in enumerate(plain)]
        assert [o.status for o in executor.client.gather(futures)] == ["done before", "done before"]
    assert len(logged(log)) == 2  # the holder of the folder finds the complete result and runs nothing


@pytest.mark.slow
def test_processes_filling_a_cold_image_cache_at_once_leave_only_valid_arrays(tmp_path):
    files = [save(tmp_path / "img" / f"{i}.png", pattern(i, size=768)) for i in range(12)]
    hashes = [images.file_sha256(f) for f in files]
    cache, size, copies = tmp_path / "cache", 384, 4
    order = [k for k in range(len(files)) for _ in range(copies)]  # each image asked for by 4 tasks in a row
    random.Random(0).shuffle(order[len(order) // 2 :])
    with (
        LocalCluster(n_workers=3, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        futures = client.map(
            images.load_resized,
            [files[k] for k in order],
            [hashes[k] for k in order],
            [size] * len(order),
            [cache] * len(order),
            pure=False,
        )
        arrays = client.gather(futures)
    for k, array in zip(order, arrays):
        assert np.array_equal(array, images.resize_gray8(images.load_gray8(files[k]), size))
    cached = sorted(cache.rglob("*.npy"))
    assert len(cached) == len(files) and not [p for p in cached if ".tmp" in p.name]
    for path, digest in zip(files, hashes):
        direct = images.resize_gray8(images.load_gray8(path), size)
        assert np.array_equal(np.load(images.cache_path(cache, digest, size)), direct)


@pytest.mark.slow
def test_a_gpu_worker_runs_one_gpu_run_at_a_time(probe, tmp_path):
    log = tmp_path / "log.txt"
    files = [params_file(tmp_path, f"gpu{i}", f"value: {i}\nsleep: 1.0\nlog: {log}\n") for i in range(4)]
    with (
        LocalCluster(  # two task slots per worker, but one GPU each
            n_workers=2, threads_per_worker=2, host="127.0.0.1", dashboard_address=None, resources={"GPU": 1}
        ) as cluster,
        distributed.DaskExecutor(scheduler=cluster.scheduler_address, gpus_per_run=1) as executor,
    ):
        outcomes = runner.run_batch(probe, files, profile="smoke", out=tmp_path / "out", executor=executor)
    assert [o.status for o in outcomes] == ["complete"] * 4
    by_worker = defaultdict(list)
    for _, pid, start, end in logged(log):
        by_worker[pid].append((start, end))
    assert sum(map(len, by_worker.values())) == 4
    assert not any(overlapping(intervals) for intervals in by_worker.values()), by_worker


def test_a_task_follows_the_sequential_runners_lock(probe, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    held = ("held", {"value": 1, "sleep": 0.0, "log": str(tmp_path / "log.txt")})
    with claim.claim(out / "probe" / "held"), distributed.DaskExecutor(workers=1) as executor:
        (job,) = distributed.make_jobs(probe, [held], out, "smoke", None, wait=False)
        outcome = executor.client.submit(distributed.run_job, job, key="held").result()
    assert outcome.status == "not run" and "another batch is writing it" in outcome.detail
    assert not (out / "probe" / "held").exists()
