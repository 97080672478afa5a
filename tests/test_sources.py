"""Readers on fixture folders in each upstream layout; label rules; selection reasons."""

from __future__ import annotations

import pandas as pd
import pytest

from cxr_utils import config
from cxr_utils.data import sources


def test_figure1_reader_reads_latin1_and_finds_each_extension(fixture_root):
    table = sources.read_figure1(fixture_root)
    assert list(table.columns) == sources.SOURCE_COLUMNS
    paths = dict(zip(table["image_id"], table["path"]))
    assert paths["figure1:COVID-00002.png"] == "figure1/images/COVID-00002.png"
    assert paths["figure1:COVID-00003b.png"] == "figure1/images/COVID-00003b.png"
    # a and b images of one patient share the patient id
    patients = dict(zip(table["path"], table["patient_id"]))
    assert patients["figure1/images/COVID-00003a.jpg"] == patients["figure1/images/COVID-00003b.png"]
    assert table.loc[table["path"].str.endswith("COVID-00002.png"), "finding"].item() == ""


def test_cohen_reader_keeps_folder_and_all_rows(fixture_root):
    table = sources.read_cohen(fixture_root)
    assert len(table) == 10
    assert "cohen/volumes/c4.nii.gz" in set(table["path"])
    assert set(table["patient_id"]) >= {"cohen:1", "cohen:8"}


def test_radiography_reader_walks_class_folders(fixture_root):
    table = sources.read_radiography(fixture_root)
    assert len(table) == 14
    assert set(table["finding"]) == {"COVID-19", "No finding"}
    assert table["path"].str.match(r"radiography/COVID-19_Radiography_Dataset/(COVID|Normal)/images/").all()
    assert table["patient_id"].is_unique


def test_radiography_metadata_xlsx_is_optional_and_read_when_present(fixture_root):
    dataset = fixture_root / "radiography" / "COVID-19_Radiography_Dataset"
    pd.DataFrame(
        {"FILE NAME": ["COVID-1"], "FORMAT": ["PNG"], "SIZE": ["256*256"], "URL": ["https://example.org/covid"]}
    ).to_excel(dataset / "COVID.metadata.xlsx", index=False)
    table = sources.read_radiography(fixture_root)
    assert table.loc[table["image_id"] == "radiography:COVID-1.png", "origin_url"].item() == "https://example.org/covid"


def test_actualmed_reader(fixture_root):
    table = sources.read_actualmed(fixture_root)
    assert table["path"].tolist()[0] == "actualmed/images/a1.png"


def test_missing_root_source_folder_and_column_are_named(fixture_root, tmp_path, clean_env):
    with pytest.raises(config.ConfigError, match="nowhere"):
        config.data_root(tmp_path / "nowhere")
    with pytest.raises(config.ConfigError, match=r"source folder .*figure1"):
        sources.read_figure1(tmp_path)
    (fixture_root / "cohen" / "metadata.csv").write_text("patientid,finding\n1,COVID-19\n")
    with pytest.raises(config.ConfigError, match=r"metadata.csv.*\['view', 'modality', 'folder', 'filename'\]"):
        sources.read_cohen(fixture_root)
    with pytest.raises(config.ConfigError, match="unknown source"):
        sources.read_sources(fixture_root, ["kaggle"])


@pytest.mark.parametrize(
    "finding, label",
    [
        ("COVID-19", "COVID"),
        ("COVID-19, ARDS", "COVID"),
        ("Pneumonia/Viral/COVID-19", "COVID"),
        ("Pneumonia/Viral/SARS", "NONCOVID"),
        ("No Finding", "NONCOVID"),
        ("", "UNKNOWN"),
        ("todo", "UNKNOWN"),
        ("Inconclusive", "UNKNOWN"),
    ],
)
def test_default_rules(finding, label):
    row = pd.DataFrame([{"source": "cohen", "finding": finding, "path": "cohen/images/x.jpg"}])
    assert sources.apply_label_rules(row, "default")["label"].item() == label


@pytest.mark.parametrize(
    "source, finding, path, label",
    [
        ("cohen", "COVID-19", "cohen/images/x.jpg", "NONCOVID"),  # the study's string does not match
        ("cohen", "Pneumonia/Viral/COVID-19", "cohen/images/x.jpg", "COVID"),
        ("figure1", "", "figure1/images/x.jpg", "NONCOVID"),  # blanks became non-COVID
        ("figure1", "COVID-19", "figure1/images/x.png", "SKIP"),  # only .jpg were copied
        ("radiography", "COVID-19", "radiography/COVID/images/COVID-1.png", "COVID"),
    ],
)
def test_seed_rules_reproduce_the_study(source, finding, path, label):
    row = pd.DataFrame([{"source": source, "finding": finding, "path": path}])
    assert sources.apply_label_rules(row, "seed")["label"].item() == label


def test_unknown_label_mode_is_named():
    with pytest.raises(config.ConfigError, match="label_mode 'study'"):
        sources.label_rules("study")


def test_selection_gives_every_dropped_row_a_reason(fixture_root):
    table = sources.apply_label_rules(sources.read_sources(fixture_root), "default")
    kept, dropped = sources.select_rows(table)
    reasons = dict(zip(dropped["path"], dropped["reason"]))
    assert reasons["figure1/images/COVID-00002.png"] == "label_unknown"
    assert reasons["cohen/images/c3.jpg"] == "view_filtered"
    assert reasons["cohen/volumes/c4.nii.gz"] == "not_xray"
    assert reasons["cohen/images/c5.jpg"] == "label_unknown"
    assert reasons["actualmed/images/a3.png"] == "label_unknown"
    assert (dropped["reason"] == "duplicate_metadata_row").sum() == 1
    assert len(kept) + len(dropped) == len(table)
    assert set(kept["label"]) == {"COVID", "NONCOVID"}


def test_seed_selection_keeps_ct_and_lateral_rows(fixture_root):
    table = sources.apply_label_rules(sources.read_sources(fixture_root), "seed")
    kept, _ = sources.select_rows(table, xray_only=False, views="all")
    assert {"cohen/volumes/c4.nii.gz", "cohen/images/c3.jpg"} <= set(kept["path"])


def test_views_list_filter(fixture_root):
    table = sources.apply_label_rules(sources.read_cohen(fixture_root), "default")
    kept, _ = sources.select_rows(table, views=["PA"])
    assert set(kept["view"]) == {"PA"}


def test_views_must_be_a_known_word_or_a_list(fixture_root):
    table = sources.apply_label_rules(sources.read_cohen(fixture_root), "default")
    with pytest.raises(config.ConfigError, match="views 'lateral'"):
        sources.select_rows(table, views="lateral")


def test_orphan_files_are_listed(fixture_root):
    table = sources.read_sources(fixture_root)
    orphans = sources.orphan_files(fixture_root, table, sources.SOURCES)
    assert orphans["path"].tolist() == ["cohen/images/orphan.png"]
    assert orphans["reason"].unique().tolist() == ["no_metadata"]


def test_label_mode_comparison_counts_both_modes(fixture_root):
    table = sources.read_sources(fixture_root)
    compared = sources.label_mode_comparison(table)
    assert compared.loc[("figure1", "UNKNOWN"), "default"] == 1
    assert compared.loc[("figure1", "UNKNOWN"), "seed"] == 0
    assert compared["default"].sum() == compared["seed"].sum() == len(table)
