"""Shared fixtures: a small data root in every upstream layout, and the real mirror."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_utils import config


def pattern(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random 8-bit picture; different seeds give perceptually different images."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((6, 6)) * 255).astype(np.uint8))
    return np.asarray(coarse.resize((size, size), Image.BILINEAR))


def save(path: Path, array: np.ndarray, mode: str = "L", **kwargs) -> Path:
    """Write ``array`` (8-bit gray) as an image file in the given PIL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if mode == "RGB":
        img = img.convert("RGB")
    elif mode == "RGBA":
        img = img.convert("RGBA")
    elif mode == "P":
        img = img.convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=256)
    elif mode == "I;16":
        img = Image.fromarray(array.astype(np.uint16) * 257)
    img.save(path, **kwargs)
    return path


def write_csv(path: Path, header: str, rows: list[str], encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join([header, *rows]) + "\n").encode(encoding))


def build_fixture_root(root: Path) -> Path:
    """Every layout, with the traps: corrupt, truncated, missing and odd-mode files, blanks,
    CT rows, a lateral view, a repeated metadata row, cross-source and exact duplicates."""
    # Figure1: latin-1 metadata, images/<patientid>.<ext>
    write_csv(
        root / "figure1" / "metadata.csv",
        "patientid,offset,sex,age,finding,survival,temperature,pO2 saturation,view,modality,artifacts/distortion,notes",
        [
            "COVID-00001,1,M,50,COVID-19,,,,PA,X-ray,,fièvre",
            "COVID-00002,,F,40,,,,,AP erect,X-ray,,suspected",
            "COVID-00003a,,M,30,No finding,,,,PA,X-ray,,",
            "COVID-00003b,,M,30,No finding,,,,PA,X-ray,,",
            "COVID-00004,,M,60,COVID-19,,,,PA,X-ray,,file absent",
        ],
        encoding="latin-1",
    )
    img = root / "figure1" / "images"
    save(img / "COVID-00001.jpg", pattern(1), quality=95)
    save(img / "COVID-00002.png", pattern(2), mode="RGBA")
    save(img / "COVID-00003a.jpg", pattern(3), quality=95)
    save(img / "COVID-00003b.png", pattern(4))

    # Cohen: metadata.csv with folder/filename; X-ray and CT rows
    header = "patientid,offset,sex,age,finding,view,modality,folder,filename,license"
    write_csv(
        root / "cohen" / "metadata.csv",
        header,
        [
            "1,0,M,65,COVID-19,PA,X-ray,images,c1.jpg,CC BY",
            '1,3,M,65,"COVID-19, ARDS",AP,X-ray,images,c2.png,CC BY',
            "2,0,F,50,Pneumonia/Viral/COVID-19,L,X-ray,images,c3.jpg,CC BY",
            "3,0,F,44,COVID-19,Axial,CT,volumes,c4.nii.gz,CC BY",
            "4,0,M,70,todo,PA,X-ray,images,c5.jpg,CC BY",
            "5,0,M,20,No Finding,PA,X-ray,images,c6.png,CC BY",
            "6,0,M,33,Streptococcus,PA,X-ray,images,corrupt.jpg,CC BY",
            "7,0,M,35,SARS,PA,X-ray,images,truncated.jpg,CC BY",
            "5,1,M,20,No Finding,PA,X-ray,images,c6.png,CC BY",
            "8,0,F,61,Pneumonia/Viral/COVID-19,AP Supine,X-ray,images,c7.jpg,CC BY",
        ],
    )
    img = root / "cohen" / "images"
    save(img / "c1.jpg", pattern(11), mode="RGB", quality=95)
    save(img / "c2.png", pattern(12), mode="P")
    save(img / "c3.jpg", pattern(13))
    save(img / "c5.jpg", pattern(15))
    save(img / "c6.png", pattern(16), mode="I;16")
    save(img / "c7.jpg", pattern(17), quality=95)
    (img / "corrupt.jpg").write_bytes(b"this is not an image" * 10)
    full = save(img / "full.jpg", pattern(18, size=256), quality=95)
    (img / "truncated.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    save(img / "orphan.png", pattern(19))  # no metadata row names it

    # Radiography Database v4: <CLASS>/images/<CLASS>-N.png, 224 px grayscale
    dataset = root / "radiography" / "COVID-19_Radiography_Dataset"
    copy_of_c1 = np.asarray(Image.fromarray(pattern(11)).resize((224, 224), Image.LANCZOS))
    save(dataset / "COVID" / "images" / "COVID-1.png", copy_of_c1)
    save(dataset / "COVID" / "images" / "COVID-2.png", copy_of_c1)  # exact duplicate
    for n in range(3, 7):
        save(dataset / "COVID" / "images" / f"COVID-{n}.png", pattern(100 + n, 224))
    for n in range(1, 9):
        save(dataset / "Normal" / "images" / f"Normal-{n}.png", pattern(200 + n, 224))

    # Actualmed: metadata.csv + images/<imagename>
    write_csv(
        root / "actualmed" / "metadata.csv",
        "patientid,offset,sex,age,finding,survival,temperature,pO2 saturation,view,modality,imagename,"
        "artifacts/distortion,notes",
        [
            "ANON1,,,,COVID-19,,,,PA,X-ray,a1.png,,",
            "ANON2,,,,No finding,,,,AP,X-ray,a2.png,,Negative",
            "ANON3,,,,,,,,PA,X-ray,a3.png,,Inconclusive",
            "ANON4,,,,COVID-19,,,,PA,X-ray,a4.png,,file absent",
            "ANON5,,,,COVID-19,,,,PA,X-ray,a5.png,,copy of a Cohen image",
        ],
    )
    img = root / "actualmed" / "images"
    save(img / "a1.png", pattern(301), mode="RGB")
    save(img / "a2.png", pattern(302))
    save(img / "a3.png", pattern(303))
    save(img / "a5.png", pattern(17))
    return root


@pytest.fixture
def fixture_root(tmp_path: Path) -> Path:
    """A fresh small data root in all four upstream layouts."""
    return build_fixture_root(tmp_path / "cxr-data")


@pytest.fixture(scope="session")
def mirror_root() -> Path:
    """The real mirror (CXR_DATA_ROOT or ../shared/cxr-data); skipped with the reason if absent."""
    try:
        root = config.data_root()
    except config.ConfigError as err:
        pytest.skip(f"real data mirror not available: {err}")
    if not (root / "radiography").is_dir():
        pytest.skip(f"real data mirror not available at {root}")
    return root


@pytest.fixture(scope="session")
def mirror_build(mirror_root: Path):
    """The full default merge of the real mirror, built once per test session."""
    from cxr_utils.data import manifest, sources

    return manifest.merge_sources(mirror_root, sources.SOURCES, progress=False)


@pytest.fixture
def small_mask_root(mirror_root: Path, tmp_path: Path) -> Path:
    """A data root with 8 real Montgomery/Shenzhen pairs and 2 JSRT pairs (lung segmentation)."""
    import shutil

    from cxr_utils.analysis import lungs

    src, root = mirror_root / lungs.MASK_SETS, tmp_path / "data"
    names = {lungs.TRAIN_SET: ["MCUCXR_0001_0.png", "MCUCXR_0002_0.png", "MCUCXR_0003_0.png", "MCUCXR_0004_0.png"]}
    names[lungs.TRAIN_SET] += ["CHNCXR_0001_0.png", "CHNCXR_0002_0.png", "CHNCXR_0003_0.png", "CHNCXR_0004_0.png"]
    names[lungs.TEST_SET] = ["JPCLN001.png", "JPCNN001.png"]
    for which, files in names.items():
        for part in ("images", "masks"):
            (root / lungs.MASK_SETS / which / part).mkdir(parents=True)
            for name in files:
                shutil.copy(src / which / part / name, root / lungs.MASK_SETS / which / part / name)
    return root


def write_probe_notebook(path: Path, parameters: str, body: str) -> Path:
    """A tiny notebook for the runner tests: a typing import, a parameters cell, one body cell."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_code_cell("from typing import Optional"), cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def params_file(folder: Path, name: str, text: str) -> Path:
    """A params file ``<folder>/<name>.yaml`` holding ``text``."""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch):
    """No CXR_* settings from the caller's environment."""
    for key in list(os.environ):
        if key.startswith("CXR_"):
            monkeypatch.delenv(key)
    return monkeypatch


SCRATCH_TAG = "scratch"


def scratch_namespace(notebook_stem: str) -> dict:
    """Run the cells tagged ``scratch`` of ``notebooks/<notebook_stem>.ipynb`` (the lesson's
    from-scratch code: imports and definitions only) in a fresh namespace and return it, so a test
    can hold the notebook's version of a method equal to the package's."""
    import nbformat

    path = config.NOTEBOOKS_DIR / f"{notebook_stem}.ipynb"
    cells = [c for c in nbformat.read(str(path), as_version=4).cells if SCRATCH_TAG in c.metadata.get("tags", [])]
    assert cells, f"{path.name} has no cell tagged {SCRATCH_TAG!r}"
    namespace: dict = {"__name__": f"scratch_{notebook_stem}"}
    for cell in cells:
        exec(compile(cell.source, f"{path.name}[scratch]", "exec"), namespace)
    return namespace
