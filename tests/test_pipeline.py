"""The main job's training stages at the smoke profile: one output root through every stage, the
final fit of the configuration chosen on val, and the result.json
contract between the training notebooks (02, 03) and the run collector (in the spirit of the
recommenders project's notebook tests: execute, then read the recorded values back)."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import yaml

from cxr_utils import __main__ as cli
from cxr_utils import config, registry
from cxr_utils.reporting import collect
from cxr_utils.runs import final_fit, pipeline

IGNORED = {".git", ".venv", ".pytest_cache", ".ruff_cache", "__pycache__", ".ipynb_checkpoints"}


def project_files() -> dict[str, tuple[int, int]]:
    """Every file of the checkout (tooling folders aside) with its size and modification time."""
    found = {}
    for folder, dirs, files in os.walk(config.PROJECT_ROOT):
        dirs[:] = [d for d in dirs if d not in IGNORED and not d.endswith(".egg-info")]
        for name in files:
            path = os.path.join(folder, name)
            stat = os.stat(path)
            found[os.path.relpath(path, config.PROJECT_ROOT)] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.mark.slow
@pytest.mark.mirror
def test_training_stages_write_only_under_out_and_record_what_the_collector_reads(
    tmp_path, mirror_root, clean_env, capfd
):
    clean_env.setenv("CXR_OFFLINE", "1")
    out = tmp_path / "elsewhere"
    before = project_files()

    # The main job's data and training stages, with two grid runs and two transfer runs (one without weights).
    narrower = {
        "custom CNN grid": "params/custom/run0[12].yaml",
        "transfer learning": ("params/transfer/mobilenet025.yaml", "params/transfer/xception.yaml"),
    }
    training_stages = [
        replace(s, params_glob=narrower.get(s.name, s.params_glob))
        for s in pipeline.STAGES
        if s.notebook.kind in ("data", "custom", "transfer")
    ]
    assert [s.name for s in training_stages][-2:] == ["final fit: custom", "final fit: transfer"]
    assert pipeline.run_pipeline(training_stages, profile="smoke", out=out, export_to=None)

    assert project_files() == before, "the pipeline wrote inside the checkout"
    assert registry.manifest_file("default", out).is_file() and registry.manifest_file("seed_rules", out).is_file()
    assert any((out / "cache" / "images").rglob("*.npy")), "the image cache is not under --out"
    custom = collect.completed_runs(registry.CUSTOM_CNN, out, include_smoke=True)
    transfer = collect.completed_runs(registry.TRANSFER, out, include_smoke=True)
    screening = [r for r in custom if r["role"] == "screening"]
    finals = [r for r in custom if r["role"] == "final"]
    assert sorted(r["run"] for r in screening) == ["run01", "run02"]
    assert [r["run"] for r in transfer if r["role"] == "screening"] == ["mobilenet025"]
    chosen = collect.choose_on_val(collect.runs_table(profile="smoke", out=out, role="screening"), "custom")
    assert [r["run"] for r in finals] == [f"final_{chosen.run}_seed1"]  # the smoke profile refits one seed
    assert finals[0]["screened_as"] == chosen.run and finals[0]["effective"]["max_train_images"] is None
    assert set(collect.not_run(out)["run"]) == {"xception"}  # no weights under this root
    for result in custom + transfer:
        missing = [key for key in collect.result_keys(result["kind"]) if not collect.has_key(result, key)]
        assert not missing, (result["run"], missing)
        assert result["data"]["manifest"] == str(registry.manifest_file("default", out))
    table = collect.runs_table(profile="smoke", out=out)
    assert len(table) == len(custom) + len(transfer) and table["val_auc"].between(0, 1).all()
    printed = capfd.readouterr()
    assert "without encryption" not in printed.out + printed.err


@pytest.mark.slow
@pytest.mark.mirror
def test_the_course_profile_runs_its_rules_at_smoke_size(tmp_path, mirror_root, clean_env):
    clean_env.setenv("CXR_OFFLINE", "1")
    out = tmp_path / "course"
    small_merge = tmp_path / "data" / "default.yaml"  # the default merge's name, at the smoke merge's size
    small_merge.parent.mkdir()
    small_merge.write_text((config.PROJECT_ROOT / "params" / "data" / "smoke.yaml").read_text())
    course_runs = config.profile_only("course", registry.CUSTOM_CNN.stem)
    assert len(course_runs) == 3  # two of them run here (time); test_config checks the profile's own list
    narrower = {
        "data merge": {"params_glob": None, "params_from": lambda kind, profile, out: [small_merge]},
        "custom CNN grid": {"params_glob": tuple(f"params/custom/{run}.yaml" for run in course_runs[:2])},
    }
    stages = [
        replace(s, **narrower.get(s.name, {}))
        for s in pipeline.STAGES
        if s.name in ("data merge", "custom CNN grid", "custom CNN seeds")
    ]
    assert pipeline.run_pipeline(stages, profile="course", out=out, export_to=None)

    custom = collect.completed_runs(registry.CUSTOM_CNN, out)
    screening = sorted(
        (r for r in custom if r["role"] == "screening" and not r.get("screened_as")), key=lambda r: r["run"]
    )
    assert [r["run"] for r in screening] == course_runs[:2]
    table = collect.runs_table(profile="course", out=out, role="screening")
    leaders = collect.leaders(table[table["run"] == table["configuration"]], "custom", 3)
    extra = sorted(r["run"] for r in custom if r["role"] == "screening" and r.get("screened_as"))
    assert extra == sorted(f"{name}_seed2" for name in leaders)  # successive halving: the course profile's second seed
    assert {(r["effective"]["image_size"], r["effective"]["epochs"]) for r in screening} == {(64, 5)}
    # The final fits are planned from these runs, not run: the smoke test above runs one end to end.
    files = final_fit.write_params("custom", "course", out)
    chosen = collect.choose_on_val(collect.runs_table(profile="course", out=out, role="screening"), "custom")
    assert [f.stem for f in files] == [f"final_{chosen.run}_seed1", f"final_{chosen.run}_seed2"]  # two seeds
    final = config.apply_profile(yaml.safe_load(files[0].read_text()), "course", registry.CUSTOM_CNN.stem)[0]
    assert final["role"] == "final" and final["epochs"] == 15 and final["max_train_images"] is None


def test_the_lung_model_and_features_are_provisioned_once_just_before_their_stages(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(pipeline, "provision_weights", lambda backbone, base: events.append(("weights", backbone)))
    monkeypatch.setattr(
        pipeline, "provision_lungs", lambda profile, base: events.append(("lungs", profile, base)) or 2.0
    )
    monkeypatch.setattr(
        pipeline.runner, "run_batch", lambda notebook, files, **kwargs: events.append(("stage", notebook.stem)) or []
    )
    stages = [s for s in pipeline.STAGES if s.name in ("comparison", "shortcuts", "set-ups")]
    stages.insert(2, stages[1])  # a second shortcut stage does not provision again
    out = tmp_path / "out"
    assert pipeline.run_pipeline(stages, profile="smoke", out=out, export_to=None, provision=pipeline.PROVISIONED)
    assert events == [
        ("weights", "xception"),
        ("stage", "04_comparison"),
        ("lungs", "smoke", out.resolve()),
        ("stage", "05_shortcuts"),
        ("stage", "05_shortcuts"),
        ("stage", "06_setups"),
    ]
    events.clear()
    assert pipeline.run_pipeline(stages, profile="smoke", out=out, export_to=None, provision=())  # --no-provision
    assert [e for e in events if e[0] != "stage"] == []
    events.clear()
    training = [s for s in pipeline.STAGES if s.name == "data merge"]  # no shortcut stage: no lung model
    assert pipeline.run_pipeline(training, profile="smoke", out=out, export_to=None, provision=pipeline.PROVISIONED)
    assert [e[0] for e in events] == ["weights", "stage"]

    class LocalWorkers:  # an executor whose workers split this machine's cores
        def splits_local_cores(self) -> bool:
            return True

    monkeypatch.setattr(
        pipeline, "provision_features", lambda stage, profile, base: events.append(("features", stage.name)) or 1.0
    )
    transfer = [s for s in pipeline.STAGES if s.name in ("transfer learning", "transfer seeds")]
    for executor, provision, expected in (
        (LocalWorkers(), pipeline.PROVISIONED, [("features", "transfer learning")]),  # once, before the first
        (None, pipeline.PROVISIONED, []),  # one run after another computes each image once anyway
        (LocalWorkers(), (), []),  # --no-provision
    ):
        events.clear()
        pipeline.run_pipeline(
            transfer, profile="smoke", out=out, export_to=None, provision=provision, executor=executor
        )
        assert [e for e in events if e[0] != "weights"] == [*expected, *[("stage", "03_transfer_learning")] * 2]

    asked = {}
    monkeypatch.setattr(pipeline, "run_pipeline", lambda **kwargs: asked.update(kwargs) or True)
    assert cli.main(["pipeline", "--profile", "smoke", "--out", str(out)]) == 0
    assert pipeline.LUNGS in asked["provision"] and "xception" in asked["provision"]
    assert cli.main(["pipeline", "--profile", "smoke", "--out", str(out), "--no-provision"]) == 0
    assert asked["provision"] == ()


@pytest.mark.slow
@pytest.mark.mirror
def test_the_lung_model_is_trained_once_where_notebook_05_finds_it(small_mask_root, tmp_path, clean_env, capsys):
    """The smoke profile's lung model on 8 real training images: trained into <out>/cache, found
    there the next time and by notebook 05's own call (its kernels see CXR_OUTPUT_DIR=<out>), with
    nothing written inside the checkout; missing mask sets are reported and the job goes on."""
    from cxr_utils.analysis import lungs

    clean_env.setenv("CXR_OFFLINE", "1")
    clean_env.setenv("CXR_DATA_ROOT", str(small_mask_root))
    out, before = tmp_path / "out", project_files()
    first = pipeline.provision_lungs("smoke", out)
    printed = capsys.readouterr().out
    assert "trained in" in printed and "JSRT (independent), n=2: Dice" in printed
    assert f"provisioned and measured in {first:.0f} s" in printed
    path = lungs.cached(out / "cache", lungs.profile_settings("smoke"))
    assert path is not None and path.parent == out / "cache" / "lungs"
    pipeline.provision_lungs("smoke", out)
    assert "found in the cache" in capsys.readouterr().out
    clean_env.setenv("CXR_OUTPUT_DIR", str(out))
    assert lungs.provision(config.cache_dir(), lungs.profile_settings("smoke")) == path  # the notebook's call
    assert project_files() == before, "provisioning wrote inside the checkout"
    clean_env.setenv("CXR_DATA_ROOT", str(tmp_path / "no-masks"))
    (tmp_path / "no-masks").mkdir()
    pipeline.provision_lungs("smoke", tmp_path / "other")
    missing = capsys.readouterr().out
    assert "lung model not provisioned" in missing and "fixed rectangle for every image" in missing


def test_a_full_disk_while_provisioning_stops_the_job_naming_the_path_and_other_errors_pass(tmp_path):
    import errno

    from cxr_utils.runs import storage

    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "x.npy"))
    with pytest.raises(storage.StorageError, match="provisioning frozen features stopped") as raised:
        pipeline.raise_storage_error(full, "provisioning frozen features stopped", tmp_path)
    assert str(tmp_path / "cache" / "x.npy") in str(raised.value)
    missing = FileNotFoundError(errno.ENOENT, "No such file", "gone.png")
    with pytest.raises(FileNotFoundError):
        pipeline.raise_storage_error(missing, "provisioning frozen features stopped", tmp_path)
