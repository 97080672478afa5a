"""Fetch the sources into a data root (for machines with internet).

``python -m cxr_utils data download [--root DIR] [--sources ...] [--latest]``

Figure1, Cohen and Actualmed are git repositories, cloned and checked out at the commits the
mirror was made from (``--latest`` keeps upstream HEAD). The Radiography Database comes from
Kaggle through the ``kaggle`` command with the user's own credentials.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

GITHUB = "https://github.com/"
KAGGLE_DATASET = "tawsifurrahman/covid19-radiography-database"


@dataclass(frozen=True)
class GitSource:
    """A source published as a git repository."""

    name: str
    repo: str  # owner/name
    commit: str  # the commit the shared mirror was made from


GIT_SOURCES = {
    "figure1": GitSource("figure1", "agchung/Figure1-COVID-chestxray-dataset", "95bb569e55f4"),
    "cohen": GitSource("cohen", "ieee8023/covid-chestxray-dataset", "584034aa7fbf"),
    "actualmed": GitSource("actualmed", "agchung/Actualmed-COVID-chestxray-dataset", "27240dd8dec9"),
}


class DownloadError(RuntimeError):
    """A download that cannot go ahead; the message says what to do."""


Runner = Callable[[Sequence[str]], None]


def _run(command: Sequence[str]) -> None:
    subprocess.run(list(command), check=True)


def clone_source(
    source: GitSource, root: Path, *, git_base: str = GITHUB, latest: bool = False, run: Runner = _run
) -> Path:
    """Clone one git source into ``root/<name>`` (skipped when the folder already exists)."""
    target = Path(root) / source.name
    if target.exists():
        print(f"{source.name}: {target} already exists; not downloading")
        return target
    url = f"{git_base.rstrip('/')}/{source.repo}"
    print(f"{source.name}: cloning {url}")
    run(["git", "clone", "--quiet", url, str(target)])
    if not latest:
        try:
            run(["git", "-C", str(target), "checkout", "--quiet", source.commit])
        except subprocess.CalledProcessError as err:
            raise DownloadError(
                f"{source.name}: commit {source.commit} not found in {url}; use --latest to keep "
                "upstream HEAD (labels may then use a newer vocabulary)"
            ) from err
    return target


def kaggle_credentials_present(environ: dict[str, str] | None = None, home: Path | None = None) -> bool:
    """Kaggle looks for KAGGLE_USERNAME/KAGGLE_KEY or a ``kaggle.json`` file."""
    env = os.environ if environ is None else environ
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return True
    config_dir = Path(env.get("KAGGLE_CONFIG_DIR") or (home or Path.home()) / ".kaggle")
    return (config_dir / "kaggle.json").is_file()


def download_radiography(
    root: Path, *, run: Runner = _run, environ: dict[str, str] | None = None, home: Path | None = None
) -> Path:
    """Download and unzip the COVID-19 Radiography Database into ``root/radiography``."""
    target = Path(root) / "radiography"
    if target.exists():
        print(f"radiography: {target} already exists; not downloading")
        return target
    if not kaggle_credentials_present(environ, home):
        raise DownloadError(
            "radiography: no Kaggle credentials. Create an API token on kaggle.com (Account -> "
            "Create New API Token) and save it as ~/.kaggle/kaggle.json, or set KAGGLE_USERNAME "
            f"and KAGGLE_KEY; or download {KAGGLE_DATASET} by hand and unzip it into {target}."
        )
    if run is _run and shutil.which("kaggle") is None:
        raise DownloadError("radiography: the `kaggle` command is missing: pip install 'cxr-covid[download]'")
    print(f"radiography: downloading {KAGGLE_DATASET} from Kaggle")
    run(["kaggle", "datasets", "download", "-d", KAGGLE_DATASET, "-p", str(target), "--unzip"])
    return target


def download(
    sources: Iterable[str], root: Path, *, git_base: str = GITHUB, latest: bool = False, run: Runner = _run
) -> list[Path]:
    """Download the named sources into the data root; returns their folders."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    folders = []
    for name in sources:
        if name == "radiography":
            folders.append(download_radiography(root, run=run))
        elif name in GIT_SOURCES:
            folders.append(clone_source(GIT_SOURCES[name], root, git_base=git_base, latest=latest, run=run))
        else:
            known = ", ".join([*GIT_SOURCES, "radiography"])
            raise DownloadError(f"unknown source '{name}' (known: {known})")
    return folders
