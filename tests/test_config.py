"""Settings resolution, params files, parameter validation and profiles."""

from __future__ import annotations

import pytest

from cxr_utils import config


def test_data_root_order(tmp_path, clean_env):
    explicit, from_env = tmp_path / "explicit", tmp_path / "env"
    explicit.mkdir()
    from_env.mkdir()
    clean_env.setenv("CXR_DATA_ROOT", str(from_env))
    assert config.data_root(explicit) == explicit.resolve()
    assert config.data_root() == from_env.resolve()
    clean_env.delenv("CXR_DATA_ROOT")
    clean_env.setattr(config, "SHARED_DATA_ROOT", tmp_path / "no-mirror")
    clean_env.setattr(config, "PROJECT_ROOT", tmp_path / "project")
    with pytest.raises(config.ConfigError, match=r"project/data/raw.*data/raw/"):
        config.data_root()


def test_data_root_defaults_to_the_shared_mirror_when_present(tmp_path, clean_env):
    mirror = tmp_path / "shared" / "cxr-data"
    mirror.mkdir(parents=True)
    clean_env.setattr(config, "SHARED_DATA_ROOT", mirror)
    assert config.data_root() == mirror.resolve()


def test_output_root_and_run_dir(tmp_path, clean_env):
    clean_env.setenv("CXR_OUTPUT_DIR", str(tmp_path / "out"))
    assert (
        config.run_dir("notebooks/01_data_merge.ipynb", "default")
        == (tmp_path / "out" / "01_data_merge" / "default").resolve()
    )
    assert config.run_dir("01_data_merge", "x", str(tmp_path / "elsewhere")) == (tmp_path / "elsewhere").resolve()


def test_notebook_parameters_are_read_from_the_parameters_cell():
    spec = config.notebook_parameters("01_data_merge")
    assert set(config.RUNNER_PARAMETERS) <= set(spec)
    assert spec["seed"].annotation == "int" and isinstance(spec["seed"].default, int)
    assert spec["data_root"].annotation == "Optional[str]" and spec["data_root"].default is None
    assert spec["profile"].default == "smoke"
    assert all(p.help for p in spec.values())


def test_validation_names_unknown_keys_and_bad_types():
    spec = config.notebook_parameters("01_data_merge")
    config.validate_parameters({"seed": 3, "data_root": None, "views": ["PA"], "train_fraction": 1}, spec, "ok")
    with pytest.raises(config.ConfigError, match=r"x.yaml: unknown key 'sedd'"):
        config.validate_parameters({"sedd": 3}, spec, "x.yaml")
    with pytest.raises(config.ConfigError, match=r"key 'seed' = '3' \(str\) is not int"):
        config.validate_parameters({"seed": "3"}, spec, "x.yaml")
    with pytest.raises(config.ConfigError, match=r"key 'xray_only' = 1 \(int\) is not bool"):
        config.validate_parameters({"xray_only": 1}, spec, "x.yaml")
    with pytest.raises(config.ConfigError, match=r"key 'seed' = True"):
        config.validate_parameters({"seed": True}, spec, "x.yaml")


def test_params_files(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("seed: 4\nsources: [cohen]\n")
    assert config.load_params_file(good) == {"seed": 4, "sources": ["cohen"]}
    nested = tmp_path / "nested.yaml"
    nested.write_text("model:\n  epochs: 3\n")
    with pytest.raises(config.ConfigError, match="must be flat; nested keys: model"):
        config.load_params_file(nested)
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1, 2\n")
    with pytest.raises(config.ConfigError, match="broken.yaml is not valid YAML"):
        config.load_params_file(broken)
    with pytest.raises(config.ConfigError, match="absent.yaml not found"):
        config.load_params_file(tmp_path / "absent.yaml")


def test_every_committed_data_params_file_is_valid():
    spec = config.notebook_parameters("01_data_merge")
    files = sorted((config.PROJECT_ROOT / "params" / "data").glob("*.yaml"))
    assert {f.stem for f in files} >= {"default", "seed_rules"}
    for path in files:
        config.validate_parameters(config.load_params_file(path), spec, str(path))


def test_profiles_cap_only_what_a_run_has():
    params = {"max_images_per_source": None, "seed": 1, "epochs": 40, "image_size": 32}
    effective, changed = config.apply_profile(params, "smoke", "02_custom_cnn")
    assert effective["max_images_per_source"] == 24
    assert effective["epochs"] == 1
    assert effective["image_size"] == 32  # already below the cap
    assert changed == {
        "max_images_per_source": {"requested": None, "effective": 24},
        "epochs": {"requested": 40, "effective": 1},
    }
    assert params["epochs"] == 40  # the requested values are not modified
    assert config.apply_profile(params, "none") == (params, {})
    assert set(config.available_profiles()) >= {"smoke", "default", "full", "paper"}
    with pytest.raises(config.ConfigError, match="profile 'huge' not found"):
        config.apply_profile(params, "huge")


def test_default_profile_scales_before_capping_so_a_grid_keeps_its_contrasts():
    runs = [{"image_size": 150, "epochs": 20}, {"image_size": 256, "epochs": 30}, {"image_size": 256, "epochs": 40}]
    effective = [config.apply_profile(r, "default", "02_custom_cnn")[0] for r in runs]
    assert [e["epochs"] for e in effective] == [5, 8, 10]
    assert [e["image_size"] for e in effective] == [38, 64, 64]


def test_profile_rules_for_one_notebook_leave_the_others_alone():
    transfer = {"image_size": 224, "epochs": 30}
    assert config.apply_profile(transfer, "default", "03_transfer_learning")[0] == {"image_size": 224, "epochs": 8}
    assert config.apply_profile(transfer, "default")[0] == {"image_size": 224, "epochs": 8}
    assert config.apply_profile(transfer, "smoke", "02_custom_cnn")[0]["image_size"] == 64
    assert config.apply_profile(transfer, "smoke", "03_transfer_learning")[0]["image_size"] == 224
    _, changed = config.apply_profile({"max_train_images": None, "learning_rate": 1e-3}, "default")
    assert changed == {"max_train_images": {"requested": None, "effective": 1500}}


def test_final_fits_take_the_profiles_final_settings_and_their_notebooks_own():
    final = {"role": "final", "epochs": 30, "early_stopping_patience": 2, "max_train_images": 100}
    custom = config.apply_profile(final, "default", "02_custom_cnn")[0]
    transfer = config.apply_profile(final, "default", "03_transfer_learning")[0]
    assert (custom["epochs"], custom["early_stopping_patience"], custom["max_train_images"]) == (60, 10, None)
    assert (transfer["epochs"], transfer["early_stopping_patience"], transfer["max_train_images"]) == (400, 10, None)
    screening = config.apply_profile({**final, "role": "screening"}, "default", "03_transfer_learning")[0]
    assert screening["epochs"] == 8 and screening["early_stopping_patience"] == 2


def test_a_profile_with_an_unknown_notebook_section_is_rejected(tmp_path, clean_env):
    (tmp_path / "odd.yaml").write_text("notebooks:\n  02_custom_cnn:\n    final: {epochs: 3}\n")
    clean_env.setattr(config, "PROFILES_DIR", tmp_path)
    with pytest.raises(config.ConfigError, match=r"notebooks.02_custom_cnn has unknown sections \['final'\]"):
        config.load_profile("odd")


def test_a_profile_keeps_only_the_runs_it_names_of_a_stage(tmp_path, clean_env):
    from cxr_utils.runs import pipeline

    grid = next(s for s in pipeline.STAGES if s.name == "custom CNN grid")
    everything = [p.stem for p in grid.params_files("default", tmp_path)]
    assert len(everything) == 14 and config.profile_only("default", "02_custom_cnn") is None
    kept = [p.stem for p in grid.params_files("course", tmp_path)]
    assert kept == config.profile_only("course", "02_custom_cnn") == ["run02", "run04", "run05"]
    assert set(kept) < set(everything)
    (tmp_path / "odd.yaml").write_text("notebooks:\n  02_custom_cnn:\n    only: run02\n")
    (tmp_path / "nothing.yaml").write_text("notebooks:\n  02_custom_cnn:\n    only: [run99]\n")
    clean_env.setattr(config, "PROFILES_DIR", tmp_path)
    with pytest.raises(config.ConfigError, match=r"notebooks.02_custom_cnn.only = 'run02' must be a list of run names"):
        config.load_profile("odd")
    with pytest.raises(config.ConfigError, match=r"stage 'custom CNN grid': no params files kept by profile nothing"):
        grid.params_files("nothing", tmp_path)


def test_the_course_profile_scales_screening_and_final_fits():
    run04 = config.load_params_file(config.PROJECT_ROOT / "params" / "custom" / "run04.yaml")
    screening = config.apply_profile(run04, "course", "02_custom_cnn")[0]
    assert (screening["image_size"], screening["epochs"]) == (64, 5)
    final = config.apply_profile({**run04, "role": "final", "early_stopping_patience": 2}, "course", "02_custom_cnn")[0]
    assert (final["epochs"], final["early_stopping_patience"], final["max_train_images"]) == (15, 4, None)
    merge = config.apply_profile({"max_images_per_source": None}, "course", "01_data_merge")[0]
    assert merge["max_images_per_source"] == 150 and config.final_fit_settings("course")["seeds"] == 2
