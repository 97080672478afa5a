"""The data flow counts (sources -> exclusions -> merged -> splits) and their diagram."""

from __future__ import annotations

import matplotlib
import pandas as pd
import pytest
from matplotlib.patches import FancyBboxPatch
from matplotlib.text import Text
from PIL import Image

from cxr_utils.data import manifest, sources
from cxr_utils.reporting import flow

matplotlib.use("Agg")


@pytest.fixture
def fixture_build(fixture_root):
    return manifest.merge_sources(fixture_root, sources.SOURCES, progress=False)


def _rows_and_files_on_disk(root) -> dict[str, int]:
    """Metadata rows plus image files no row names (Radiography: its files), counted here."""
    naming_column = {
        "figure1": ("latin-1", "patientid"),
        "cohen": ("utf-8", "filename"),
        "actualmed": ("utf-8", "imagename"),
    }
    counts = {}
    for source, (encoding, column) in naming_column.items():
        meta = pd.read_csv(root / source / "metadata.csv", dtype=str, encoding=encoding)
        named = set(meta[column])
        unnamed = [p for p in (root / source / "images").iterdir() if p.name not in named and p.stem not in named]
        counts[source] = len(meta) + len(unnamed)
    counts["radiography"] = sum(1 for _ in (root / "radiography").rglob("*.png"))
    return counts


def test_kept_plus_excluded_is_what_was_read(fixture_root, fixture_build):
    counts = flow.flow_counts(fixture_build.manifest, fixture_build.exclusions, fixture_build.source_table)
    table = counts["sources"]
    assert table["read"].to_dict() == _rows_and_files_on_disk(fixture_root)
    assert (table["kept"] + table["excluded"] == table["read"]).all()
    assert (table["not_drawn"] == 0).all()
    assert (counts["reasons"].sum(axis=1) == table["excluded"]).all()
    assert counts["reasons"].loc["cohen", "no_metadata"] == 1


def test_splits_sum_to_kept(fixture_build):
    m = fixture_build.manifest
    counts = flow.flow_counts(m, fixture_build.exclusions, fixture_build.source_table)
    splits, table = counts["splits"], counts["sources"]
    assert splits["images"].sum() == table["kept"].sum() == len(m)
    assert (splits["COVID"] + splits["NONCOVID"] == splits["images"]).all()
    assert counts["external_sources"] == ["actualmed"]
    assert splits.at["external", "images"] == table.at["actualmed", "kept"]
    internal = table.drop(index="actualmed")["kept"].sum()
    assert counts["merged"]["images"] == internal == splits.drop(index="external")["images"].sum()
    assert splits["groups"].sum() == m["group_id"].nunique()


def test_a_subset_run_shows_what_was_not_drawn(fixture_root):
    build = manifest.merge_sources(fixture_root, sources.SOURCES, max_images_per_source=2, progress=False)
    table = flow.flow_counts(build.manifest, build.exclusions, build.source_table)["sources"]
    assert table.at["radiography", "not_drawn"] > 0
    assert (table["read"] == table["kept"] + table["excluded"] + table["not_drawn"]).all()
    without_table = flow.flow_counts(build.manifest, build.exclusions)["sources"]
    assert (without_table["not_drawn"] == 0).all()


def _texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_text()]


def test_diagram_saves_a_png_with_every_split_count(fixture_build, tmp_path):
    counts = flow.flow_counts(fixture_build.manifest, fixture_build.exclusions, fixture_build.source_table)
    path = tmp_path / "flow.png"
    fig = flow.flow_diagram(counts, path)
    text = "\n".join(t.get_text() for t in _texts(fig))
    for split, row in counts["splits"].iterrows():
        assert split in text
        for line in (f"{row['images']:,} images", f"COVID {row['COVID']:,}", f"non-COVID {row['NONCOVID']:,}"):
            assert line in text
    for row in counts["sources"].to_dict("records"):
        assert f"{row['read']:,} rows/files read" in text and f"excluded {row['excluded']:,}" in text
    assert min(t.get_fontsize() for t in _texts(fig)) >= 8
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width <= 7.4 * 120


def test_every_text_sits_inside_a_box(fixture_build):
    exclusions = fixture_build.exclusions.copy()
    exclusions.loc[0, "reason"] = "a_reason_whose_name_is_far_too_long_for_one_line_of_its_box"
    counts = flow.flow_counts(fixture_build.manifest, exclusions)
    fig = flow.flow_diagram(counts)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [p.get_window_extent(renderer) for p in fig.findobj(FancyBboxPatch)]
    for t in _texts(fig):
        extent = t.get_window_extent(renderer)
        assert any(
            b.x0 <= extent.x0 and extent.x1 <= b.x1 and b.y0 <= extent.y0 and extent.y1 <= b.y1 for b in boxes
        ), t.get_text()


def test_nothing_to_draw_is_an_error():
    empty = pd.DataFrame(columns=manifest.MANIFEST_COLUMNS)
    counts = flow.flow_counts(empty, pd.DataFrame(columns=sources.EXCLUSION_COLUMNS))
    with pytest.raises(ValueError, match="no sources"):
        flow.flow_diagram(counts)


@pytest.mark.mirror
def test_real_mirror_flow_adds_up(mirror_root, mirror_build):
    counts = flow.flow_counts(mirror_build.manifest, mirror_build.exclusions, mirror_build.source_table)
    table = counts["sources"]
    assert (table["kept"] + table["excluded"] == table["read"]).all()
    meta = pd.read_csv(mirror_root / "actualmed" / "metadata.csv", dtype=str)
    assert table.at["actualmed", "read"] == len(meta)
    assert counts["splits"]["images"].sum() == table["kept"].sum() == len(mirror_build.manifest)
