"""Errors of the file system as one-line messages: a full disk, a read-only or forbidden path.

A run that meets one is never counted complete; the batch stops there (the next run would meet
the same disk) with :class:`StorageError`, whose message names the path, the free space where it
matters, and what to do. The command line prints it without a traceback.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EROFS,)
FORBIDDEN = (errno.EACCES, errno.EPERM)
STORAGE_ERRNOS = (*FULL, *READ_ONLY, *FORBIDDEN)
# the exceptions a file system's refusal arrives as, named as a kernel reports them
OS_ERROR_NAMES = ("OSError", "IOError", "PermissionError", "FileExistsError")
# how an errno reads once it has crossed from a kernel: "[Errno 28] No space left on device: '/x/y'",
# or inside h5py's messages "errno = 28"; with the system's words where no number is given
_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\]|errno = (\d+)")
_PATH_TEXT = re.compile(r"\[Errno \d+\][^:']*:\s*'([^']*)'")
_STRERROR = {os.strerror(code): code for code in STORAGE_ERRNOS}


class StorageError(RuntimeError):
    """The file system refused a write (or a read) the batch needs; the message says what to do."""


def storage_errno(err: BaseException | str) -> tuple[int, str | None] | None:
    """(errno, path) of a storage error: an ``OSError`` raised here, or one that a notebook's
    kernel raised, known by its name and message (``"OSError: [Errno 28] …"``, as papermill and
    :func:`cxr_utils.runs.runner.describe_error` report it); None for any other error."""
    if isinstance(err, OSError):
        return (err.errno, err.filename) if err.errno in STORAGE_ERRNOS else None
    if isinstance(err, str):
        ename, _, evalue = err.partition(": ")
    else:
        ename, evalue = str(getattr(err, "ename", "") or ""), str(getattr(err, "evalue", "") or "")
    if ename.rsplit(".", 1)[-1] not in OS_ERROR_NAMES:
        return None
    codes = [int(a or b) for a, b in _ERRNO_TEXT.findall(evalue)]
    codes += [code for words, code in _STRERROR.items() if words in evalue]
    code = next((c for c in codes if c in STORAGE_ERRNOS), None)
    if code is None:
        return None
    path = _PATH_TEXT.search(evalue)
    return code, path.group(1) if path else None


def free_megabytes(path: str | Path) -> float | None:
    """Free space on the file system holding ``path`` (its nearest existing parent), in MB."""
    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free / 1e6
            except OSError:
                return None
    return None


def explain(code: int, path: str | Path | None, what: str, fallback: str | Path) -> str:
    """One line for a storage error: the path (``fallback`` when the error names none), the free
    space where it matters, ``what`` it meant (e.g. "run 02_custom_cnn/run03 was not counted")
    and what to do."""
    where = Path(path or fallback)
    if code in FULL:
        free = free_megabytes(where)
        space = f"{free:.1f} MB free" if free is not None else "free space unknown"
        return (
            f"the disk holding {where} is full ({space}); {what}. "
            "Free some space (or choose another --out) and rerun: completed runs are kept and skipped."
        )
    if code in READ_ONLY:
        return (
            f"{where} is on a read-only file system; {what}. "
            "Choose a writable output root (--out or CXR_OUTPUT_DIR) and rerun."
        )
    return (
        f"no permission to use {where} ({errno.errorcode.get(code, code)}); {what}. "
        "Fix the permissions of that path (or choose another --out) and rerun."
    )
