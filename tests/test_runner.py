"""The papermill batch runner on a tiny notebook: complete, failed, unfinished, resumed, forced."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import params_file, write_probe_notebook

from cxr_utils import __main__ as cli
from cxr_utils import config, results
from cxr_utils.runs import runner

PARAMETERS = """run_name: str = "t"  # run name
output_dir: Optional[str] = None  # run folder
profile: str = "smoke"  # profile
value: int = 1  # a number to double
fail: bool = False  # raise in the notebook
finish: bool = True  # mark the run complete at the end"""

BODY = """from pathlib import Path
from cxr_utils import results
params = dict(run_name=run_name, output_dir=output_dir, profile=profile, value=value, fail=fail, finish=finish)
run = results.start_run("probe", "test", params, params, {}, Path(output_dir))
if fail:
    raise RuntimeError("asked to fail")
run.record(metrics={"double": value * 2})
if finish:
    run.complete()"""


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    return write_probe_notebook(tmp_path / "probe.ipynb", PARAMETERS, BODY)


def test_batch_records_outcomes_resumes_and_never_overwrites(probe, tmp_path):
    out = tmp_path / "out"
    files = [
        params_file(tmp_path, "good", "value: 21\n"),
        params_file(tmp_path, "bad", "fail: true\n"),
        params_file(tmp_path, "unfinished", "finish: false\n"),
    ]
    outcomes = runner.run_batch(probe, files, profile="smoke", out=out)
    assert [o.status for o in outcomes] == ["complete", "failed", "failed"]
    good = out / "probe" / "good"
    result = results.read_result(good)
    assert result["status"] == "complete" and result["metrics"] == {"double": 42}
    assert result["profile"] == "smoke" and result["run"] == "good"
    assert result["provenance"]["git_commit"] and result["provenance"]["versions"]["python"]
    kernels = result["provenance"]["cpu_kernels"]  # the kernel inherited the runner's oneDNN setting
    assert kernels[config.ONEDNN_ENV] == os.environ[config.ONEDNN_ENV] and kernels["library"] in ("oneDNN", "Eigen")
    assert (good / "notebook.ipynb").is_file() and (good / "params.yaml").is_file()
    bad = results.read_result(out / "probe" / "bad")
    assert bad["status"] == "failed" and "asked to fail" in bad["error"]
    assert "without marking" in results.read_result(out / "probe" / "unfinished")["error"]

    again = runner.run_batch(probe, files, profile="smoke", out=out)
    assert [o.status for o in again] == ["done before", "failed", "failed"]
    assert (out / "probe" / "bad.previous" / "result.json").is_file()  # the failed try was kept aside

    forced = runner.run_batch(probe, files[:1], profile="smoke", out=out, force=True)
    assert forced[0].status == "complete"
    assert results.is_complete(out / "probe" / "good.previous")


def test_bad_params_are_rejected_before_anything_runs(probe, tmp_path, capsys):
    out = tmp_path / "out"
    files = [params_file(tmp_path, "fine", "value: 1\n"), params_file(tmp_path, "typo", "valeu: 1\n")]
    with pytest.raises(config.ConfigError, match=r"typo.yaml: unknown key 'valeu'"):
        runner.run_batch(probe, files, out=out)
    assert not out.exists()
    wrong_type = params_file(tmp_path, "wrong", "value: many\n")
    assert cli.main(["run", str(probe), str(wrong_type), "--out", str(out)]) == 2
    assert "key 'value' = 'many' (str) is not int" in capsys.readouterr().err
    reserved = params_file(tmp_path, "reserved", "profile: full\n")
    with pytest.raises(config.ConfigError, match="set by the runner"):
        runner.run_batch(probe, [reserved], out=out)
    with pytest.raises(config.ConfigError, match="profile 'gpu' not found"):
        runner.run_batch(probe, [files[0]], profile="gpu", out=out)


def test_start_run_sets_an_earlier_result_aside(tmp_path):
    folder = tmp_path / "run"
    first = results.start_run("nb", "test", {"a": 1}, {"a": 1}, {}, folder)
    first.complete()
    second = results.start_run("nb", "test", {"a": 2}, {"a": 2}, {}, folder)
    assert second.result["status"] == "running"
    kept = json.loads((tmp_path / "run.previous" / "result.json").read_text())
    assert kept["status"] == "complete" and kept["requested"] == {"a": 1}
    assert not results.is_complete(folder)


def test_impossible_values_are_rejected_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    fine = params_file(tmp_path, "fine", "filter: 3\n")
    negative = params_file(tmp_path, "negative", "filter: -3\nlearning_rate: 0.001\n")
    with pytest.raises(config.ConfigError, match=r"negative.yaml \(profile smoke\): key 'filter' = -3 must be >= 1"):
        runner.run_batch("notebooks/02_custom_cnn.ipynb", [fine, negative], profile="smoke", out=out)
    too_small = params_file(tmp_path, "small", "backbone: xception\nimage_size: 64\n")
    with pytest.raises(config.ConfigError, match=r"small.yaml.*'image_size' = 64 is below xception's minimum of 71"):
        runner.run_batch("notebooks/03_transfer_learning.ipynb", [too_small], profile="smoke", out=out)
    assert not out.exists()  # nothing ran


def test_a_result_made_with_other_settings_is_redone_not_reused(probe, tmp_path, capsys):
    out = tmp_path / "out"
    path = params_file(tmp_path, "run", "value: 1\n")
    assert runner.run_batch(probe, [path], profile="smoke", out=out)[0].status == "complete"
    assert runner.run_batch(probe, [path], profile="smoke", out=out)[0].status == "done before"
    assert runner.run_batch(probe, [path], profile="none", out=out)[0].status == "complete"
    assert "profile smoke -> none" in capsys.readouterr().out
    path.write_text("value: 2\n")
    assert runner.run_batch(probe, [path], profile="none", out=out)[0].status == "complete"
    assert results.read_result(out / "probe" / "run")["metrics"] == {"double": 4}
    assert results.read_result(out / "probe" / "run.previous")["metrics"] == {"double": 2}
    path.write_text("fail: false\n")  # value deleted: the notebook's default 1 applies again
    assert runner.run_batch(probe, [path], profile="none", out=out)[0].status == "complete"
    assert "value 2 -> 1" in capsys.readouterr().out
    assert results.read_result(out / "probe" / "run")["metrics"] == {"double": 2}
