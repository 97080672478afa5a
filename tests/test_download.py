"""Downloads against local fixtures: a git repository in Figure1's layout, and Kaggle's CLI faked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import build_fixture_root

from cxr_utils import __main__ as cli
from cxr_utils.data import download, sources


def git(*args: str, cwd: Path) -> str:
    env_args = ["-c", "user.name=test", "-c", "user.email=test@example.org", "-c", "init.defaultBranch=main"]
    return subprocess.run(["git", *env_args, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def git_base(tmp_path):
    """A folder that plays github.com: <base>/agchung/Figure1-COVID-chestxray-dataset as a git repo."""
    layout = build_fixture_root(tmp_path / "layout")
    repo = tmp_path / "base" / "agchung" / "Figure1-COVID-chestxray-dataset"
    repo.parent.mkdir(parents=True)
    (layout / "figure1").rename(repo)
    git("init", "--quiet", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "--quiet", "-m", "first", cwd=repo)
    first = git("rev-parse", "HEAD", cwd=repo)
    (repo / "later.txt").write_text("a later commit\n")
    git("add", "-A", cwd=repo)
    git("commit", "--quiet", "-m", "later", cwd=repo)
    return f"file://{tmp_path / 'base'}", first


def test_clone_checks_out_the_pinned_commit_and_reads(git_base, tmp_path, monkeypatch):
    base, first = git_base
    pinned = download.GitSource("figure1", "agchung/Figure1-COVID-chestxray-dataset", first)
    monkeypatch.setitem(download.GIT_SOURCES, "figure1", pinned)
    root = tmp_path / "data"
    download.download(["figure1"], root, git_base=base)
    assert git("rev-parse", "HEAD", cwd=root / "figure1") == first
    assert not (root / "figure1" / "later.txt").exists()
    table = sources.read_figure1(root)
    assert len(table) == 5 and (root / table["path"].iloc[0]).is_file()


def test_latest_keeps_head_and_an_unknown_pin_says_what_to_do(git_base, tmp_path):
    base, _ = git_base
    root = tmp_path / "data"
    with pytest.raises(download.DownloadError, match=r"commit 95bb569e55f4 not found.*--latest"):
        download.download(["figure1"], root, git_base=base)
    root2 = tmp_path / "data2"
    download.download(["figure1"], root2, git_base=base, latest=True)
    assert (root2 / "figure1" / "later.txt").is_file()


def test_existing_folder_is_not_downloaded_again(tmp_path, capsys):
    (tmp_path / "figure1").mkdir()
    calls = []
    download.download(["figure1"], tmp_path, run=calls.append)
    assert calls == [] and "already exists" in capsys.readouterr().out


def test_kaggle_without_credentials_says_how_to_add_them(tmp_path):
    with pytest.raises(download.DownloadError, match=r"no Kaggle credentials.*kaggle.json.*KAGGLE_KEY"):
        download.download_radiography(tmp_path, environ={}, home=tmp_path)


def test_kaggle_with_credentials_runs_the_download(tmp_path):
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    assert download.kaggle_credentials_present({}, home=tmp_path)
    assert download.kaggle_credentials_present({"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}, home=tmp_path / "x")
    calls = []
    download.download_radiography(tmp_path / "data", run=calls.append, environ={}, home=tmp_path)
    assert calls == [
        [
            "kaggle",
            "datasets",
            "download",
            "-d",
            download.KAGGLE_DATASET,
            "-p",
            str(tmp_path / "data" / "radiography"),
            "--unzip",
        ]
    ]


def test_cli_reports_missing_credentials(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    assert cli.main(["data", "download", "--root", str(tmp_path / "d"), "--sources", "radiography"]) == 2
    assert "no Kaggle credentials" in capsys.readouterr().err
