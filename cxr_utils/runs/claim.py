"""One writer per run folder, across processes and batches.

Before a run folder is looked at, moved aside or written, its runner takes an inter-process lock
on ``<folder>.lock`` beside it (``filelock``: an ``flock`` that the operating system releases
when its process dies, so a lock is never left behind by a crash). While it holds the lock,
``<folder>.holder.json`` names the holder: process id, host, start time and, once started, the
notebook's kernel. A second batch that reaches a held folder waits, saying who holds it, or skips
it (``wait=False``, the command line's ``--no-wait``).

A holder file still there when the lock is taken was left by a process that died (a clean
release removes it). Its kernel may outlive it by a second (ipykernel's parent poller
then stops it); if that kernel still runs on this host, it is stopped before the folder is
touched, so a rerun never shares the folder with an orphan.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import filelock
import psutil

from .. import results

LOCK_SUFFIX = ".lock"
HOLDER_SUFFIX = ".holder.json"
ORPHAN_GRACE_SECONDS = 5.0  # how long a dead holder's kernel gets to stop before it is killed


def lock_path(folder: Path) -> Path:
    """``<folder>.lock``, beside the folder (the folder itself may be moved aside)."""
    return folder.with_name(folder.name + LOCK_SUFFIX)


def holder_path(folder: Path) -> Path:
    """``<folder>.holder.json``: who holds the folder's lock, while it is held."""
    return folder.with_name(folder.name + HOLDER_SUFFIX)


def read_holder(folder: Path) -> dict[str, Any]:
    """What the holder file says (empty when nobody holds the folder or it cannot be read)."""
    try:
        text = holder_path(folder).read_text()
    except OSError:
        return {}
    try:
        holder = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    """ "pid 4242 on host-a since 2026-11-30T10:02:11+00:00" (or "another process")."""
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"


class Claim:
    """A held run folder: its lock, and the holder file written beside it."""

    def __init__(self, folder: Path, lock: filelock.BaseFileLock) -> None:
        self.folder = folder
        self.lock = lock
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": results.now()}
        self._write()

    def kernel_started(self, pid: int) -> None:
        """Record the notebook kernel working for this holder (so a takeover can stop an orphan);
        bookkeeping only: a failure here never stops the run."""
        with contextlib.suppress(psutil.Error, OSError):
            self.holder["kernel"] = {"pid": pid, "created": psutil.Process(pid).create_time()}
            self._write()

    def _write(self) -> None:
        results.write_json(holder_path(self.folder), self.holder)

    def release(self) -> None:
        """Remove the holder file (a clean release) and release the lock."""
        try:
            holder_path(self.folder).unlink(missing_ok=True)
        finally:
            self.lock.release()


@contextlib.contextmanager
def claim(folder: Path, *, wait: bool = True, say: Callable[[str], None] = print) -> Iterator[Claim | None]:
    """Hold ``folder`` for the duration of the block: yields a :class:`Claim`, or None when
    another process holds it and ``wait`` is False. Waiting, it says once who holds the folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(lock_path(folder))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        holder = describe_holder(read_holder(folder))
        if not wait:
            say(f"{folder}: skipped, {holder} is writing it (--no-wait)")
            yield None
            return
        say(f"{folder}: {holder} is writing it; waiting until it finishes (--no-wait skips such runs)")
        lock.acquire()
    try:
        stop_orphan(folder, read_holder(folder), say)
        held = Claim(folder, lock)
    except BaseException:
        lock.release()
        raise
    try:
        yield held
    finally:
        held.release()


def stop_orphan(folder: Path, stale: dict[str, Any], say: Callable[[str], None]) -> None:
    """Take over from a holder that died: say so, and stop its kernel if it still runs here."""
    if not stale:
        return
    say(f"{folder}: taking over from {describe_holder(stale)}, which died while holding it")
    kernel = stale.get("kernel") or {}
    if stale.get("host") != socket.gethostname() or not kernel.get("pid"):
        return
    try:
        process = psutil.Process(int(kernel["pid"]))
        if abs(process.create_time() - float(kernel.get("created", 0))) > 0.01:
            return  # the pid now belongs to another process
        if stopped(process, ORPHAN_GRACE_SECONDS):
            return
        say(f"{folder}: stopping the orphaned kernel (pid {process.pid}) of that holder")
        process.kill()
        if not stopped(process, ORPHAN_GRACE_SECONDS):
            say(f"{folder}: the orphaned kernel (pid {process.pid}) did not stop; it may still write there")
    except psutil.NoSuchProcess:
        return  # gone already
    except psutil.AccessDenied:
        say(f"{folder}: not allowed to stop the orphaned kernel (pid {kernel['pid']}); it may still write there")


def stopped(process: psutil.Process, seconds: float) -> bool:
    """Whether ``process`` ends within ``seconds`` (a zombie, ended but not reaped, counts as ended)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False
