"""Dask executor for the batch runner: each run to do is one task on Dask distributed workers.

``python -m cxr_utils run NOTEBOOK PARAMS... --executor dask --workers N`` starts N local worker
processes (listening on 127.0.0.1 only); ``--scheduler tls://HOST:8786`` uses a running Dask
scheduler (see the README's "Running on a cluster"). Dask places the tasks; nothing here schedules.

The client validates every params file and leaves out runs whose complete result is there (it
only reads). The other runs become tasks. A task, on its worker, follows the sequential runner's
rule for a run folder (:mod:`cxr_utils.runs.claim`):

1. holds the run folder's inter-process lock, so no two processes ever write one folder, whether
   they are tasks of two batches, a task and a sequential batch, or anything else that runs
   this project's runner (with ``--no-wait`` a held folder is skipped instead of waited for);
2. checks that this worker sees the output root, the data root (notebooks that read data) and
   the ImageNet weights the client found (transfer runs); if not, the run fails naming the path;
3. holding the lock, skips a complete result (another batch may have made it meanwhile) or sets
   aside what the folder holds (e.g. an attempt on a worker that died: never a result), and runs
   papermill into it, as the sequential runner does.

A task whose worker dies is run once more on another worker (the scheduler's
``allowed-failures``, which :func:`local_cluster` sets; a remote scheduler keeps its own); a task
that raises (the runner's own code failing, not a notebook: that is an outcome) is retried once
(``retries=1``). A run that gets no outcome is recorded as failed in its ``result.json``.
The client prints the sequential runner's lines as runs start and finish, under a progress bar.
"""

from __future__ import annotations

import os
import queue
import socket
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
from distributed import Client, Future, LocalCluster, Security, get_worker, wait
from tqdm import tqdm

from .. import config, registry, results
from . import claim, runner, storage

LOOPBACK = "127.0.0.1"
TOPIC = "cxr-run-started"  # the event a task sends when its run starts on a worker
ALLOWED_FAILURES = 1  # a run whose worker dies is tried on one more worker
READS_DATA = ("data", "custom", "transfer")  # kinds of notebooks whose runs read the data root
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Job:
    """One run for a worker: what the task needs, and what its worker must see before it runs."""

    notebook: str  # relative to the project when inside it: each machine has its own checkout
    name: str
    params: dict[str, Any]
    folder: Path
    base: Path  # the output root, the same path on every machine
    profile: str
    kernel: str | None
    batch: str
    force: bool
    wait: bool  # wait for a folder another process holds (else skip it)
    reads_data: bool
    weights: tuple[str, str | None] | None  # (backbone, weights_path) whose ImageNet weights the client found


@dataclass
class DaskExecutor:
    """Sends a batch's runs to Dask workers; a context manager holding the client (and the local
    cluster) for every batch run inside it, e.g. all stages of the main job."""

    scheduler: str | None = None  # address of a running scheduler, e.g. tls://host:8786
    workers: int | None = None  # else: start this many local workers
    gpus_per_run: int = 0  # Dask resource GPU each run needs (workers declare --resources GPU=n)
    tls: tuple[str, str, str] | None = None  # CA file, certificate, key (else Dask's own security config)
    client: Client | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if (self.scheduler is None) == (self.workers is None):
            raise config.ConfigError("the dask executor needs either --scheduler ADDRESS or --workers N (not both)")
        if self.workers is not None and self.workers < 1:
            raise config.ConfigError(f"--workers {self.workers} must be at least 1")
        if self.gpus_per_run < 0:
            raise config.ConfigError(f"--gpus-per-run {self.gpus_per_run} must be 0 or more")
        if self.tls and self.workers:
            raise config.ConfigError("TLS settings are for --scheduler; local workers listen on 127.0.0.1 only")

    def __enter__(self) -> DaskExecutor:
        if self.scheduler:
            self.client = Client(self.scheduler, security=self._security())
        else:
            self.client = Client(local_cluster(self.workers, self.gpus_per_run))
        return self

    def __exit__(self, *exc: object) -> None:
        cluster = self.client.cluster
        self.client.close()
        if cluster is not None:
            cluster.close()
        self.client = None

    def splits_local_cores(self) -> bool:
        """True for two or more local workers (``workers``) without GPUs, each given its share of
        this machine's cores; False for a scheduler's workers, which have their own machines, and
        for GPU runs, which belong on the workers that hold the GPUs."""
        return self.scheduler is None and (self.workers or 0) > 1 and not self.gpus_per_run

    def _security(self) -> Security | None:
        """TLS from the three files, else None: Dask then reads its ``distributed.comm.tls`` config."""
        if not self.tls:
            return None
        ca_file, cert, key = self.tls
        return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True)

    def run(
        self,
        nb_path: Path,
        planned: Sequence[tuple[str, dict[str, Any]]],
        base: Path,
        *,
        profile: str,
        force: bool,
        kernel: str | None,
        wait: bool = True,
    ) -> list[runner.Outcome]:
        """The client's part of :func:`runner.run_batch`: leave out complete results, send the rest
        to the workers (each decides again, holding its folder), report each run as it starts and
        finishes."""
        if self.client is None:
            raise RuntimeError("use the executor as a context manager: with DaskExecutor(...) as executor")
        base.mkdir(parents=True, exist_ok=True)
        prefixes = {name: f"[{i}/{len(planned)}] {nb_path.stem}/{name}" for i, (name, _) in enumerate(planned, 1)}
        outcomes: dict[str, runner.Outcome] = {}
        todo = []
        defaults = runner.notebook_defaults(nb_path)
        for name, params in planned:
            done = runner.done_before(base / nb_path.stem / name, name, params, profile, force, defaults)
            if done:
                say(f"{prefixes[name]}: skipped (complete result in {done.folder}; --force to redo)")
                outcomes[name] = done
            else:
                todo.append((name, params))
        resources = {"GPU": self.gpus_per_run} if self.gpus_per_run else None
        futures = {
            self.client.submit(run_job, job, key=f"cxr-{job.batch}-{job.name}", retries=1, resources=resources): job
            for job in make_jobs(nb_path, todo, base, profile, kernel, force=force, wait=wait)
        }
        follow(self.client, futures, prefixes, outcomes, profile)
        return [outcomes[name] for name, _ in planned]


def local_cluster(workers: int, gpus_per_run: int = 0) -> LocalCluster:
    """``workers`` processes on this machine, reachable from it only (127.0.0.1, no dashboard).
    Each runs one run at a time, whose thread pools get an equal share of the cores.

    Dask's nannies, which live in this process, would otherwise set the thread limits of their
    default ``pre-spawn-environ`` (OMP_NUM_THREADS=1 and the like) in this process's own
    environment before each worker starts, and every kernel started here (a stage of one run)
    would inherit them. The workers get their share through ``env`` instead; this process keeps
    its thread settings (the rest of ``pre-spawn-environ``, e.g. MALLOC_TRIM_THRESHOLD_, still
    applies)."""
    share = str(max(1, (os.cpu_count() or 1) // workers))
    spawn_environ = {
        name: value
        for name, value in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
        if name not in config.THREAD_ENV
    }
    with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_environ}):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host=LOOPBACK,
            dashboard_address=None,
            scheduler_kwargs={"allowed_failures": ALLOWED_FAILURES},
            env=dict.fromkeys(config.THREAD_ENV, share),
            **({"resources": {"GPU": gpus_per_run}} if gpus_per_run else {}),
        )


def make_jobs(
    nb_path: Path,
    todo: Sequence[tuple[str, dict[str, Any]]],
    base: Path,
    profile: str,
    kernel: str | None,
    *,
    force: bool = False,
    wait: bool = True,
) -> list[Job]:
    """One job per run to do, with what its worker must see."""
    try:
        kind = registry.notebook(nb_path).kind
    except config.ConfigError:
        kind = None  # not one of the pipeline's notebooks: it reads no data and no weights
    defaults = runner.notebook_defaults(nb_path)
    batch = uuid.uuid4().hex[:8]
    return [
        Job(
            portable(nb_path),
            name,
            params,
            base / nb_path.stem / name,
            base,
            profile,
            kernel,
            batch,
            force,
            wait,
            reads_data=kind in READS_DATA,
            weights=weights_found(kind, {**defaults, **params}, profile, nb_path.stem),
        )
        for name, params in todo
    ]


def weights_found(kind: str | None, params: dict[str, Any], profile: str, stem: str) -> tuple[str, str | None] | None:
    """(backbone, weights_path) of a transfer run whose ImageNet weights this client finds: its
    worker must find them too. None otherwise: the notebook then decides as in a sequential run
    (Keras' download, or "not run: no weights")."""
    if kind != "transfer":
        return None
    from ..modeling import backbones

    effective, _ = config.apply_profile({**params, "profile": profile}, profile, stem)
    if effective["weights"] != "imagenet":
        return None
    try:
        backbones.resolve_weights(effective["backbone"], "imagenet", effective["weights_path"])
    except config.ConfigError:
        return None
    return effective["backbone"], effective["weights_path"]


def portable(path: Path) -> str:
    """A project file relative to the project (each machine resolves it in its own checkout);
    any other path absolute (it must then be on shared storage)."""
    path = path.resolve()
    return str(path.relative_to(config.PROJECT_ROOT)) if path.is_relative_to(config.PROJECT_ROOT) else str(path)


def run_job(job: Job) -> runner.Outcome:
    """On a worker: run one params file into its folder, holding it, if this worker sees what it
    needs and no other process made a complete result meanwhile."""
    worker = get_worker()
    problem = missing_here(job)
    if problem:
        where = f"worker {worker.address} ({socket.gethostname()})"
        return runner.Outcome(job.name, job.folder, "failed", detail=f"{where}: {problem}")
    notebook = config.PROJECT_ROOT / job.notebook  # an absolute path stays as it is
    what = runner.not_counted(notebook, job.name)
    try:
        with runner.claimed(job.folder, what, job.wait) as held, runner.output_root_for_kernels(job.base):
            if held is None:
                return runner.Outcome(job.name, job.folder, "not run", detail=runner.HELD)
            defaults = runner.notebook_defaults(notebook)
            prefix = f"{notebook.stem}/{job.name}"
            skipped = runner.skip_or_set_aside(
                job.folder, job.name, job.params, prefix, job.profile, job.force, defaults
            )
            if skipped:
                return skipped
            worker.log_event(TOPIC, {"batch": job.batch, "run": job.name, "worker": worker.address})
            return runner.execute_one(
                notebook, job.name, job.params, job.folder, job.profile, job.kernel, held.kernel_started
            )
    except storage.StorageError as err:  # an outcome, not a raise: Dask would retry it on another worker
        return runner.Outcome(job.name, job.folder, "failed", detail=str(err), storage=True)


def missing_here(job: Job) -> str:
    """What this worker does not see of what the job needs, naming the path; empty when nothing."""
    if not (job.base.is_dir() and os.access(job.base, os.W_OK | os.X_OK)):
        return f"the output root {job.base} is missing or not writable here (every worker needs the shared one)"
    try:
        if job.reads_data:
            config.data_root(job.params.get("data_root"))
        if job.weights:
            from ..modeling import backbones

            with runner.output_root_for_kernels(job.base):  # weights provisioned into <base>/weights/
                backbones.resolve_weights(job.weights[0], "imagenet", job.weights[1])
    except config.ConfigError as err:
        return str(err)
    return ""


def follow(
    client: Client,
    futures: dict[Future, Job],
    prefixes: dict[str, str],
    outcomes: dict[str, runner.Outcome],
    profile: str,
) -> None:
    """Print each run's lines as it starts (on which worker) and finishes, under a progress bar
    of done / running / failed runs; put each outcome in ``outcomes``."""
    started: queue.SimpleQueue = queue.SimpleQueue()
    client.subscribe_topic(TOPIC, started.put)
    batches = {job.batch for job in futures.values()}
    running: dict[str, int] = {}  # run -> attempts seen
    bar = tqdm(total=len(prefixes), initial=len(outcomes), unit="run", disable=None)  # off when not a terminal
    pending = set(futures)
    try:
        while pending:
            try:
                done, pending = wait(pending, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            while not started.empty():
                _, event = started.get()
                if event["batch"] in batches and event["run"] not in outcomes:
                    running[event["run"]] = running.get(event["run"], 0) + 1
                    attempt = f", attempt {running[event['run']]}" if running[event["run"]] > 1 else ""
                    say(f"{prefixes[event['run']]}: running (profile {profile}) on {event['worker']}{attempt}")
            for future in done:
                job = futures[future]
                outcomes[job.name] = outcome_of(future, job)
                running.pop(job.name, None)
                say(runner.outcome_line(prefixes[job.name], outcomes[job.name]))
            bar.update(len(done))
            failed = sum(o.status == "failed" for o in outcomes.values())
            bar.set_postfix({"done": len(outcomes) - failed, "running": len(running), "failed": failed})
    finally:
        client.unsubscribe_topic(TOPIC)
        client.cancel(list(pending))
        bar.close()


def outcome_of(future: Future, job: Job) -> runner.Outcome:
    """A task's outcome. A task that raised or lost its workers is a failed run; a failed run's
    ``result.json`` says so, written here when the worker could not."""
    try:
        outcome = future.result()
    except Exception as err:  # e.g. KilledWorker: the run fails, the batch goes on
        outcome = runner.Outcome(job.name, job.folder, "failed", detail=runner.describe_error(err))
    if outcome.storage:  # the output disk refuses writes: the batch stops, as a sequential one does
        raise storage.StorageError(outcome.detail)
    if outcome.status == "failed":
        record_lost_failure(job, outcome)
    return outcome


def record_lost_failure(job: Job, outcome: runner.Outcome) -> None:
    """Record a failure its worker could not record (it died, or failed before holding the folder),
    holding the folder: never over a complete result (e.g. a worker that lacked the data root
    must not spoil the earlier result it never set aside), nor over one already saying failed."""
    with claim.claim(job.folder, wait=False, say=lambda line: None) as held:
        status = (results.read_result(job.folder) or {}).get("status")
        if held is None or status in ("complete", "failed"):
            return
        what = runner.not_counted(job.notebook, job.name)
        runner.record_failure(job.folder, Path(job.notebook), job.name, outcome.detail, what)


def say(line: str) -> None:
    """Print a log line above the progress bar."""
    tqdm.write(line)
    sys.stdout.flush()
