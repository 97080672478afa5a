"""Fault injection: runs killed at several points, two batches on one output root, a full disk,
a read-only output root, non-finite numbers. Each test states what must hold afterwards.

The probe notebook below logs every process that writes a run, can hang until a control file
goes away, and can kill its own kernel while writing ``result.json``. Disks are small tmpfs
mounts (root with CAP_SYS_ADMIN, as on the project's machines; elsewhere those tests skip).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import build_fixture_root, params_file, write_probe_notebook

from cxr_utils import __main__ as cli
from cxr_utils import config, results
from cxr_utils.data import images
from cxr_utils.runs import claim, runner, storage

PROJECT = Path(__file__).resolve().parent.parent
PARAMETERS = """run_name: str = "t"  # run name
output_dir: Optional[str] = None  # run folder
profile: str = "smoke"  # profile
value: int = 1  # a number to double
pause: float = 0.0  # seconds to wait before recording
ballast_kb: int = 0  # write a file of this size into the run folder
tail_kb: int = 0  # print this much after marking the run complete"""

BODY = """import os, signal, time
from pathlib import Path
from cxr_utils import results
folder = Path(output_dir)
with open(folder.parent.parent / "writers.log", "a") as log:  # who wrote which run
    log.write(f"{run_name} {os.getppid()}\\n")
names = ("run_name", "output_dir", "profile", "value", "pause", "ballast_kb", "tail_kb")
params = {name: globals()[name] for name in names}
run = results.start_run("probe", "test", params, params, {}, folder)
control = Path(os.environ.get("CXR_TEST_CONTROL", "/nonexistent"))
if control.is_dir():
    (control / f"{run_name}.started").touch()
hang = control / f"{run_name}.hang"
if hang.exists():  # only the first attempt hangs (until its hanging file goes away)
    hang = hang.rename(control / f"{run_name}.hanging")
    while hang.exists():
        time.sleep(0.1)
if (control / f"{run_name}.die").exists():  # killed while writing result.json: half a temp file, then SIGKILL
    write_json = results.write_json
    def dying(path, data):
        if data.get("status") == "complete":
            path.with_suffix(".json.tmp").write_text('{"status": "comp')
            os.kill(os.getpid(), signal.SIGKILL)
        write_json(path, data)
    results.write_json = dying
time.sleep(pause)
(folder / "ballast.bin").write_bytes(b"x" * 1024 * ballast_kb)
run.record(metrics={"double": value * 2})
run.complete()
print("x" * 1024 * tail_kb)"""

KILL_WHILE_SETTING_ASIDE = """import os, shutil, signal, sys
from cxr_utils.__main__ import main
rmtree = shutil.rmtree
def rmtree_then_die(path, *args, **kwargs):  # the older .previous is gone, the folder not yet moved
    rmtree(path, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
shutil.rmtree = rmtree_then_die
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    return write_probe_notebook(tmp_path / "probe.ipynb", PARAMETERS, BODY)


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The probe's control folder (``<run>.hang``, ``<run>.die``; it touches ``<run>.started``)."""
    folder = tmp_path / "control"
    folder.mkdir()
    monkeypatch.setenv("CXR_TEST_CONTROL", str(folder))
    return folder


def start_batch(
    probe: Path, files: list[Path], out: Path, *extra: str, launcher: Path | None = None, log: Path | None = None
):
    """The command line's ``run`` in a process of its own (its stdout and stderr merged, into
    ``log`` when given, else a pipe)."""
    entry = [str(launcher)] if launcher else ["-m", "cxr_utils"]
    return subprocess.Popen(
        [sys.executable, *entry, "run", str(probe), *map(str, files), "--profile", "smoke", "--out", str(out), *extra],
        cwd=PROJECT,
        stdout=log.open("w") if log else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {seconds} s"
        time.sleep(0.1)


def writers(out: Path) -> Counter:
    """How many processes wrote each run (the probe logs one line per start)."""
    log = out / "writers.log"
    return Counter(line.split()[0] for line in log.read_text().splitlines()) if log.exists() else Counter()


def status(out: Path, run: str) -> str | None:
    return (results.read_result(out / "probe" / run) or {}).get("status")


# --------------------------------------------------------------------------- kill -9


def test_a_batch_killed_during_a_run_is_resumed_redoing_only_that_run(probe, control, tmp_path):
    out = tmp_path / "out"
    files = [params_file(tmp_path, name, "value: 1\n") for name in ("a", "b", "c")]
    (control / "b.hang").touch()
    batch = start_batch(probe, files, out)
    wait_for(control / "b.started")
    kernel_pid = claim.read_holder(out / "probe" / "b")["kernel"]["pid"]
    batch.send_signal(signal.SIGKILL)  # the runner dies; its kernel, still hanging, is orphaned
    batch.wait(timeout=30)
    assert status(out, "a") == "complete" and status(out, "b") == "running" and not (out / "probe" / "c").exists()
    a_started = results.read_result(out / "probe" / "a")["provenance"]["started"]

    rerun = start_batch(probe, files, out)
    text, _ = rerun.communicate(timeout=120)
    (control / "b.hanging").unlink()
    assert rerun.returncode == 0, text
    assert "taking over from pid" in text and "which died while holding it" in text
    assert "2 complete, 1 done before, 0 not run, 0 failed" in text
    assert [status(out, r) for r in ("a", "b", "c")] == ["complete"] * 3
    assert results.read_result(out / "probe" / "a")["provenance"]["started"] == a_started  # a was not redone
    assert status(out, "b.previous") == "running"  # the killed attempt, kept aside, never a result
    assert writers(out) == {"a": 1, "b": 2, "c": 1}
    with contextlib.suppress(psutil.NoSuchProcess):  # the orphaned kernel is gone (or ended, not yet reaped)
        assert psutil.Process(kernel_pid).status() == psutil.STATUS_ZOMBIE
    assert not claim.holder_path(out / "probe" / "b").exists()  # released cleanly this time


def test_a_kernel_killed_while_writing_result_json_leaves_a_failed_run_that_a_rerun_redoes(probe, control, tmp_path):
    out = tmp_path / "out"
    files = [params_file(tmp_path, "a", "value: 1\n"), params_file(tmp_path, "b", "value: 2\n")]
    (control / "a.die").touch()
    outcomes = runner.run_batch(probe, files, profile="smoke", out=out)
    assert [o.status for o in outcomes] == ["failed", "complete"]
    assert "DeadKernelError" in outcomes[0].detail or "died" in outcomes[0].detail.lower()
    assert status(out, "a") == "failed"  # the half-written temporary file never became result.json
    (control / "a.die").unlink()
    again = runner.run_batch(probe, files, profile="smoke", out=out)
    assert [o.status for o in again] == ["complete", "done before"]
    assert results.read_result(out / "probe" / "a")["metrics"] == {"double": 2}
    assert writers(out) == {"a": 2, "b": 1}


def test_a_batch_killed_while_moving_a_folder_aside_is_resumed(probe, tmp_path):
    out = tmp_path / "out"
    path = params_file(tmp_path, "a", "value: 1\n")
    assert runner.run_batch(probe, [path], profile="smoke", out=out, force=True)[0].status == "complete"
    assert runner.run_batch(probe, [path], profile="smoke", out=out, force=True)[0].status == "complete"
    assert status(out, "a.previous") == "complete"
    path.write_text("value: 2\n")  # the complete result is now stale: the next batch moves it aside
    launcher = tmp_path / "launcher.py"
    launcher.write_text(KILL_WHILE_SETTING_ASIDE)
    killed = start_batch(probe, [path], out, launcher=launcher)
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert status(out, "a") == "complete" and not (out / "probe" / "a.previous").exists()
    assert claim.read_holder(out / "probe" / "a")  # the dead holder's record is still there

    rerun = start_batch(probe, [path], out)
    text, _ = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, text
    assert "taking over from pid" in text and "1 complete, 0 done before" in text
    assert results.read_result(out / "probe" / "a")["metrics"] == {"double": 4}
    assert results.read_result(out / "probe" / "a.previous")["metrics"] == {"double": 2}


# --------------------------------------------------------------------------- two batches


def test_two_batches_on_one_output_root_run_each_run_once(probe, control, tmp_path):
    out = tmp_path / "out"
    files = [params_file(tmp_path, name, "pause: 1.0\n") for name in ("a", "b")]
    (control / "a.hang").touch()  # whoever runs a first holds it until the other batch is seen waiting
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    batches = [start_batch(probe, files, out, log=log) for log in logs]
    deadline = time.monotonic() + 120
    while not any("is writing it; waiting until it finishes" in log.read_text() for log in logs):
        assert time.monotonic() < deadline and all(b.poll() is None for b in batches), [log.read_text() for log in logs]
        time.sleep(0.2)
    wait_for(control / "a.hanging")
    (control / "a.hanging").unlink()
    for batch in batches:
        batch.wait(timeout=180)
    texts = [log.read_text() for log in logs]
    assert [b.returncode for b in batches] == [0, 0], texts
    assert writers(out) == {"a": 1, "b": 1}  # no run written by two processes, none done twice
    assert not list((out / "probe").glob("*.previous"))  # no live folder was moved aside
    assert [status(out, r) for r in ("a", "b")] == ["complete", "complete"]
    joined = "\n".join(texts)
    assert "is writing it; waiting until it finishes" in joined and "pid " in joined
    counts = Counter(word for text in texts for word in ("1 complete", "2 complete", "0 complete") if word in text)
    assert sum(int(k[0]) * n for k, n in counts.items()) == 2  # two runs completed over both batches


def test_no_wait_skips_a_folder_another_process_holds(probe, tmp_path, capsys):
    out = tmp_path / "out"
    files = [params_file(tmp_path, "a", "value: 1\n"), params_file(tmp_path, "b", "value: 1\n")]
    with claim.claim(out / "probe" / "a"):
        assert (
            cli.main(["run", str(probe), *map(str, files), "--profile", "smoke", "--out", str(out), "--no-wait"]) == 0
        )
    text = capsys.readouterr().out
    assert f"skipped, pid {os.getpid()} on" in text and "(--no-wait)" in text
    assert "1 complete, 0 done before, 1 not run, 0 failed; not run: a" in text
    assert status(out, "a") is None and status(out, "b") == "complete"


# --------------------------------------------------------------------------- full and read-only disks


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` for the block (skips where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path) -> None:
    """Fill a disk to the last byte."""
    with open(disk / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 4096)


def test_a_full_disk_during_the_data_merge_is_one_line_and_the_rerun_completes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(config.DATA_ROOT_ENV, str(build_fixture_root(tmp_path / "cxr-data")))
    merge = [str(PROJECT / "params" / "data" / "smoke.yaml")]
    with small_disk(tmp_path / "disk", "300k") as out:
        command = ["run", "notebooks/01_data_merge.ipynb", *merge, "--profile", "smoke", "--out", str(out)]
        assert cli.main(command) == 1
        err = capsys.readouterr().err
        assert (
            err.startswith("error: the disk holding ") and " MB free); run 01_data_merge/smoke was not counted" in err
        )
        assert "Free some space" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not results.is_complete(out / "01_data_merge" / "smoke")
        subprocess.run(["mount", "-o", "remount,size=8m", str(out)], check=True)  # space freed
        assert cli.main(command) == 0
        assert results.is_complete(out / "01_data_merge" / "smoke")
        assert (out / "01_data_merge" / "smoke" / "manifest.csv").is_file()


def test_a_full_disk_in_a_kernel_or_at_the_record_stops_the_batch_with_one_line(probe, tmp_path, capsys):
    files = [params_file(tmp_path, "a", "ballast_kb: 400\n"), params_file(tmp_path, "b", "value: 1\n")]
    with small_disk(tmp_path / "disk", "256k") as out:
        assert cli.main(["run", str(probe), *map(str, files), "--profile", "smoke", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert "error: the disk holding" in err and "run probe/a was not counted" in err and "Traceback" not in err
        assert status(out, "a") in ("failed", "running") and not (out / "probe" / "b").exists()  # the batch stopped


def test_a_run_whose_notebook_cannot_be_saved_after_it_said_complete_is_not_counted(probe, tmp_path, capsys):
    path = params_file(tmp_path, "a", "tail_kb: 400\n")  # printed after run.complete(): papermill's last save fails
    with small_disk(tmp_path / "disk", "256k") as out:
        command = ["run", str(probe), str(path), "--profile", "smoke", "--out", str(out)]
        assert cli.main(command) == 1
        assert "error: the disk holding" in capsys.readouterr().err
        folder = out / "probe" / "a"
        assert status(out, "a") is None and results.read_result(folder) is None
        assert '"status": "complete"' in (folder / runner.INCOMPLETE_RESULT).read_text()  # set aside, not counted
        subprocess.run(["mount", "-o", "remount,size=8m", str(out)], check=True)
        assert cli.main(command) == 0 and status(out, "a") == "complete"  # the rerun redoes it


def test_the_cache_and_the_record_are_never_half_written_on_a_full_disk(tmp_path):
    source = tmp_path / "image.png"
    from conftest import pattern, save

    save(source, pattern(1, 128))
    record = {"status": "complete", "metrics": {"auc": 0.9}}
    with small_disk(tmp_path / "disk", "64k") as disk:
        results.write_json(disk / "result.json", record)
        fill(disk)
        with pytest.raises(OSError) as raised:
            images.load_resized(source, "ab" * 32, 128, disk / "cache")
        assert raised.value.errno == errno.ENOSPC
        assert not list((disk / "cache").rglob("*.npy"))  # neither the array nor its temporary file
        with pytest.raises(OSError):
            results.write_json(disk / "result.json", {**record, "status": "failed", "error": "x" * 10_000})
        assert results.read_result(disk) == record and not list(disk.glob("*.tmp"))
        (disk / "filler").unlink()
        assert np.array_equal(
            images.load_resized(source, "ab" * 32, 128, disk / "cache"),
            images.load_resized(source, "cd" * 32, 128, tmp_path / "cache"),
        )


def test_a_read_only_output_root_is_one_line_and_nothing_is_written(probe, tmp_path, capsys):
    files = [params_file(tmp_path, "a", "value: 1\n")]
    with small_disk(tmp_path / "disk", "1m") as out:
        subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)
        assert cli.main(["run", str(probe), *map(str, files), "--profile", "smoke", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert "is on a read-only file system; run probe/a was not counted" in err and "Traceback" not in err
        assert list(out.iterdir()) == []


def test_storage_errors_are_recognised_from_a_kernels_text_and_explained(tmp_path):
    assert storage.storage_errno(OSError(errno.ENOSPC, "No space left on device", "/x/y")) == (errno.ENOSPC, "/x/y")
    text = "OSError: [Errno 28] No space left on device: '/out/02_custom_cnn/run01/history.csv' (cell 7)"
    assert storage.storage_errno(text) == (errno.ENOSPC, "/out/02_custom_cnn/run01/history.csv")
    assert storage.storage_errno("PermissionError: [Errno 13] Permission denied: '/data/cohen'")[0] == errno.EACCES
    assert storage.storage_errno("ValueError: [Errno 28] in a message that is no OSError") is None
    h5py = "OSError: [Errno 28] Can't write data (file write failed: time = x, errno = 28, error message = 'x')"
    assert storage.storage_errno(h5py)[0] == errno.ENOSPC
    assert storage.storage_errno("OSError: Unable to synchronously create file (No space left on device)") == (
        errno.ENOSPC,
        None,
    )
    assert storage.storage_errno("OSError: [Errno 2] No such file; then [Errno 30] Read-only file system")[0] == 30
    assert storage.storage_errno("FileNotFoundError: [Errno 2] No such file or directory: 'x'") is None
    assert storage.storage_errno(ValueError("bad")) is None
    message = storage.explain(errno.EACCES, "/data/cohen", "run x was not counted", tmp_path)
    assert "no permission to use /data/cohen (EACCES); run x was not counted" in message


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "[0.001, .nan]"])
def test_non_finite_numbers_are_rejected_with_file_key_and_value(tmp_path, value):
    path = params_file(tmp_path, "lr", f"learning_rate: {value}\n" if "[" not in value else f"rotation: {value}\n")
    key = "learning_rate" if "[" not in value else "rotation"
    with pytest.raises(config.ConfigError, match=rf"lr.yaml: .*key '{key}' = .* is not a finite number"):
        runner.run_batch("notebooks/02_custom_cnn.ipynb", [path], profile="smoke", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_profile_with_a_non_finite_number_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "odd.yaml").write_text("scale: {epochs: .nan}\n")
    monkeypatch.setattr(config, "PROFILES_DIR", tmp_path)
    with pytest.raises(config.ConfigError, match=r"odd.yaml: key 'scale' = \{'epochs': nan\} is not a finite number"):
        config.load_profile("odd")


def test_each_phase_records_the_peak_memory_so_far(tmp_path):
    code = f"""
import numpy as np
from pathlib import Path
from cxr_utils import results
run = results.start_run("probe", "probe", {{}}, {{"run_name": "memory"}}, {{}}, Path({str(tmp_path)!r}))
with run.phase("small"):
    small = np.ones(1_000)
with run.phase("large"):
    large = np.ones(400 * 2**20 // 8)  # 400 MiB, written
run.complete()
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    peaks = results.read_result(tmp_path)["peak_memory_mib"]
    assert set(peaks) == {"small", "large", "whole_run"}
    assert peaks["large"] - peaks["small"] > 250 and peaks["whole_run"] >= peaks["large"]
