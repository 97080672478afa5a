"""Facts for the Data section: the mirror README's table and terms, the Radiography Database's
own README against its files, and demographics per partition; on the real mirror and on fixtures."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_utils.config import ConfigError
from cxr_utils.data import facts, manifest, sources

FIXTURE_README = """# a fixture mirror

| folder | upstream | commit (date) | images here | notes |
|---|---|---|---|---|
| `figure1/` | owner/figure1-repo | aaaa111 (2020-05-08) | 4 of 5 | `metadata.csv` (latin-1); **1 blank** |
| `cohen/` | owner/cohen-repo | bbbb222 (2020-06-22) | 9 X-ray files | CT rows **absent** |
| `radiography/COVID-19_Radiography_Dataset/` | Radiogr. | cccc333 | 6 of 10 `COVID`; 8 of 20 `Normal` | **224×224** |
| `actualmed/` | owner/actualmed-repo | dddd444 | 4 of 5 | external |

## Terms
Research use only. Figure1 and Actualmed: "research purposes only". Cohen: per-image licences
in `metadata.csv`. Radiography Database: cite A. et al., J. Med. 1 (2020) 2.

## Next section
not terms
"""

FIXTURE_DATABASE_README = """*****A DATABASE

First release: 5 COVID-19, 9 normal, 1 lung opacity and 2 viral pneumonia images.
Then we have 10 COVID-19 along with 20 Normal, 30 Lung Opacity and 40 Viral Pneumonia images.

***Normal images:
----------
20 Normal data are collected from two datasets.
-15 RSNA [1]
-5 Kaggle [2]

**Reference:
[1]https://example.org/rsna
[2] https://example.org/kaggle

***Formats
    - All the images are PNG at 300*300 pixels.
"""


@pytest.fixture
def readme_root(fixture_root: Path) -> Path:
    """The fixture mirror with a README like the real one and the database's own README."""
    (fixture_root / "README.md").write_text(FIXTURE_README, encoding="utf-8")
    dataset = fixture_root / "radiography" / "COVID-19_Radiography_Dataset"
    (dataset / "README.md.txt").write_text(FIXTURE_DATABASE_README, encoding="utf-8")
    return fixture_root


def _files(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file())


# --------------------------------------------------------------------------- fixture mirror


def test_fixture_table_is_parsed_as_written_and_stripped(readme_root):
    table = facts.mirror_sources(readme_root).set_index("source")
    assert list(table.index) == list(sources.SOURCES)
    assert table.at["figure1", "folder"] == "figure1/"
    assert table.at["figure1", "commit"] == "aaaa111"
    assert table.at["figure1", "commit_date"] == "2020-05-08"
    assert table.at["radiography", "commit_date"] == ""
    assert table.at["figure1", "notes"] == "metadata.csv (latin-1); 1 blank"
    assert table.at["radiography", "images_here"] == "6 of 10 COVID; 8 of 20 Normal"


def test_fixture_measures_match_the_files_on_disk(readme_root):
    table = facts.mirror_sources(readme_root).set_index("source")
    for source in ("figure1", "cohen", "actualmed"):
        assert table.at[source, "image_files"] == _files(readme_root / source / "images")
    meta = pd.read_csv(readme_root / "actualmed" / "metadata.csv", dtype=str)
    absent = sum(not (readme_root / "actualmed" / "images" / name).is_file() for name in meta["imagename"])
    assert absent > 0
    assert table.at["actualmed", "metadata_rows"] == len(meta)
    assert table.at["actualmed", "xray_rows_file_absent"] == absent
    cohen = pd.read_csv(readme_root / "cohen" / "metadata.csv", dtype=str)
    assert table.at["cohen", "xray_rows"] == (cohen["modality"] == "X-ray").sum() < len(cohen)
    xray = cohen[cohen["modality"] == "X-ray"].drop_duplicates("filename")
    present = sum((readme_root / "cohen" / "images" / name).is_file() for name in xray["filename"])
    assert table.at["cohen", "licences"] == f"{cohen['license'].iloc[0]}: {present}"
    assert pd.isna(table.at["radiography", "metadata_rows"])


def test_fixture_terms_are_split_per_source(readme_root):
    terms = facts.mirror_terms(readme_root)
    assert terms["all"] == "Research use only."
    assert terms["figure1"] == terms["actualmed"] == '"research purposes only".'
    assert terms["cohen"] == "per-image licences in metadata.csv."
    assert terms["radiography"].startswith("cite A. et al., J. Med. 1")
    assert "not terms" not in " ".join(terms.values())


def test_readme_without_table_names_the_file(readme_root):
    readme = readme_root / "README.md"
    readme.write_text("# a mirror\n\nNo table here.\n\n## Terms\nResearch use only.\n")
    with pytest.raises(ConfigError, match=re.escape(str(readme)) + ".*no source table"):
        facts.mirror_sources(readme_root)
    readme.write_text("| folder | upstream | notes |\n|---|---|---|\n| `cohen/` | x | y |\n")
    with pytest.raises(ConfigError, match=r"README.md, line 1.*\['commit \(date\)', 'images here'\]"):
        facts.mirror_sources(readme_root)
    readme.write_text(FIXTURE_README.replace("| 4 of 5 | external |", "| 4 of 5 |"))
    with pytest.raises(ConfigError, match=r"README.md, line 8: 4 cells"):
        facts.mirror_sources(readme_root)
    readme.unlink()
    with pytest.raises(ConfigError, match=re.escape(str(readme)) + " not found"):
        facts.mirror_sources(readme_root)


def test_fixture_database_readme_against_its_files(readme_root):
    facts_ = facts.radiography_upstream(readme_root)
    assert facts_["upstream_counts"] == {"COVID": 10, "Normal": 20, "Lung_Opacity": 30, "Viral Pneumonia": 40}
    assert facts_["normal_subsources"] == {"RSNA": 15, "Kaggle": 5}
    assert facts_["references"]["2"] == "https://example.org/kaggle"
    assert facts_["upstream_size"] == (300, 300)
    dataset = readme_root / "radiography" / "COVID-19_Radiography_Dataset"
    assert facts_["present"]["COVID"] == _files(dataset / "COVID" / "images")
    assert facts_["present"]["Lung_Opacity"] == 0
    with Image.open(dataset / "Normal" / "images" / "Normal-1.png") as img:
        assert facts_["sizes_measured"] == {img.size: sum(facts_["present"].values())}
    assert facts_["paediatric_expected"] == pytest.approx(facts_["present"]["Normal"] * 5 / 20)
    assert 0 < facts_["paediatric_sd"] < facts_["paediatric_expected"]


def test_database_readme_missing_or_without_counts_is_named(readme_root):
    path = readme_root / "radiography" / "COVID-19_Radiography_Dataset" / "README.md.txt"
    path.write_text("*****A DATABASE\nWe have 10 COVID-19 and 20 Normal images.\n")
    with pytest.raises(ConfigError, match="README.md.txt: no sentence gives a count for every class"):
        facts.radiography_upstream(readme_root)
    path.unlink()
    with pytest.raises(ConfigError, match="README.md.txt not found"):
        facts.radiography_upstream(readme_root)


@pytest.mark.parametrize(
    "view, expected",
    [
        ("PA", "PA"),
        ("AP erect", "AP"),
        ("ap", "AP"),
        ("AP Supine", "AP Supine"),
        ("L", "other"),
        ("?", "not recorded"),
        (float("nan"), "not recorded"),
        (None, "not recorded"),
    ],  # fmt: skip
)
def test_view_classes(view, expected):
    assert facts.view_class(view) == expected


def test_median_iqr_and_nothing_recorded():
    assert facts.median_iqr(pd.Series([10.0, 20.0, 30.0, 40.0, 50.0])) == "30 (20-40)"
    assert facts.median_iqr(pd.Series([np.nan])) == "n/a"


def test_fixture_demographics_and_the_not_recorded_path(fixture_root):
    figure1 = fixture_root / "figure1" / "metadata.csv"
    figure1.write_bytes(figure1.read_bytes().replace(b"COVID-00001,1,M,50,", b"COVID-00001,1,M,50+,"))
    build = manifest.merge_sources(fixture_root, sources.SOURCES, progress=False)
    m = build.manifest
    table = facts.demographics(fixture_root, m)
    assert table.loc[("all", "all sources"), "images"] == len(m)
    radiography = table.loc[("all", "radiography")]
    n = (m["source"] == "radiography").sum()
    assert (radiography["images"], radiography["sex not recorded"], radiography["view not recorded"]) == (n, n, n)
    assert radiography["age, median (IQR)"] == "n/a"
    assert radiography["patients"] == 0 and radiography["images without patient id"] == n
    actualmed = table.loc[("external", "actualmed")]
    assert actualmed["sex not recorded"] == actualmed["images"] > 0
    # "50+" is recorded but is not a number: counted as text, left out of the median
    assert table.loc[("all", "figure1"), "age as text"] == 1
    # ages read independently: Cohen's metadata joined on file name
    meta = pd.read_csv(fixture_root / "cohen" / "metadata.csv", dtype=str).drop_duplicates("filename")
    ages = dict(zip("cohen/images/" + meta["filename"], pd.to_numeric(meta["age"])))
    cohen_ages = m.loc[m["source"] == "cohen", "path"].map(ages)
    assert table.loc[("all", "cohen"), "images with age"] == cohen_ages.notna().sum() > 0
    assert table.loc[("all", "cohen"), "age, median (IQR)"].startswith(f"{cohen_ages.median():g} (")


# --------------------------------------------------------------------------- real mirror


@pytest.mark.mirror
def test_real_readme_table_has_the_four_sources_and_their_terms(mirror_root):
    table = facts.mirror_sources(mirror_root)
    assert sorted(table["source"]) == sorted(sources.SOURCES)
    assert table["upstream"].str.len().gt(0).all() and table["commit"].str.len().gt(0).all()
    assert table["terms"].str.len().gt(0).all()
    assert not table["notes"].str.contains(r"\*\*|`").any()
    # what the README says is here is what is on disk
    for row in table.itertuples():
        stated = [int(n.replace(",", "")) for n in re.findall(r"(\d[\d,]*) (?:of\b|X-ray files)", row.images_here)]
        assert sum(stated) == row.image_files, row.source


@pytest.mark.mirror
def test_real_actualmed_files_present_are_fewer_than_its_metadata_rows(mirror_root):
    actualmed = facts.mirror_sources(mirror_root).set_index("source").loc["actualmed"]
    assert actualmed["image_files"] == _files(mirror_root / "actualmed" / "images")
    assert actualmed["image_files"] < actualmed["metadata_rows"]
    assert actualmed["image_files"] + actualmed["xray_rows_file_absent"] == actualmed["xray_rows"]


@pytest.mark.mirror
def test_real_radiography_sizes_are_measured_and_differ_from_upstream(mirror_root):
    stated = facts.mirror_sources(mirror_root).set_index("source").at["radiography", "notes"]
    width, height = map(int, re.search(r"(\d+)×(\d+)", stated).groups())  # the mirror README's size
    found = facts.radiography_upstream(mirror_root)
    dataset = sources.radiography_dataset_dir(mirror_root)
    assert found["present"]["Normal"] == _files(dataset / "Normal" / "images")
    assert found["sizes_measured"] == {(width, height): sum(found["present"].values())}
    assert found["upstream_size"] != (width, height)
    assert sum(found["normal_subsources"].values()) == found["upstream_counts"]["Normal"]
    assert all(found["present"][c] <= found["upstream_counts"][c] for c in found["present"])
    share = found["normal_subsources"]["Kaggle"] / found["upstream_counts"]["Normal"]
    assert found["paediatric_expected"] == pytest.approx(found["present"]["Normal"] * share)


@pytest.mark.mirror
def test_real_demographics_per_split_sum_to_the_manifest(mirror_root, mirror_build):
    m = mirror_build.manifest
    table = facts.demographics(mirror_root, m)
    overall = table.xs("all sources", level="source")
    per_split = overall.drop(index="all")["images"]
    assert per_split.to_dict() == m["split"].value_counts().to_dict()
    assert overall.at["all", "images"] == per_split.sum() == len(m)
    sex = [f"sex {c}" for c in facts.SEX_CLASSES]
    views = [f"view {c}" for c in facts.VIEW_CLASSES]
    assert (table[sex].sum(axis=1) == table["images"]).all()
    assert (table[views].sum(axis=1) == table["images"]).all()
    by_source = table.drop(index="all sources", level="source")["images"].groupby(level="partition").sum()
    assert (by_source == overall["images"].reindex(by_source.index)).all()
    cohen = m[m["source"] == "cohen"]
    assert table.loc[("all", "cohen"), "patients"] == cohen["patient_id"].nunique()
    assert table.loc[("all", "radiography"), "age, median (IQR)"] == "n/a"
