"""Run collection and model choice, the HTML export, and the committed report rendered in Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_utils import config
from cxr_utils.analysis import heldout
from cxr_utils.modeling import experiment, training
from cxr_utils.reporting import collect, export, study, tables


def fake_fit(val_auc: float, epochs: int = 3) -> training.Training:
    """A training outcome whose last epoch is the best, as training.fit would return it."""
    history = pd.DataFrame(
        {
            "epoch": range(1, epochs + 1),
            "accuracy": 0.8,
            "auc": 0.8,
            "loss": np.linspace(0.6, 0.4, epochs),
            "val_accuracy": 0.7,
            "val_auc": np.linspace(0.5, val_auc, epochs),
            "val_loss": 0.5,
            "seconds": 1.0,
        }
    )
    return training.Training(history, epochs, 3.0, None)


def fake_run(
    out,
    notebook,
    name,
    status="complete",
    val_auc=0.7,
    degenerate=False,
    profile="default",
    kind="custom",
    epoch0_val_auc=0.6,
    role="screening",
    **effective,
):
    """A run folder whose result.json carries the training record the package writes."""
    folder = out / notebook / name
    folder.mkdir(parents=True)
    epoch0, kept = {"train_auc": 0.6, "val_auc": epoch0_val_auc}, {"train_auc": 0.8, "val_auc": val_auc}
    record = experiment.training_summary(fake_fit(val_auc), {"accuracy": 0.7, "auc": val_auc}, 1000, 1000, epoch0, kept)
    params = {"image_size": 64, "epochs": 3, "study_run": None, "seed": 7, "data_run": "default", **effective}
    result = {
        "run": name,
        "kind": kind,
        "profile": profile,
        "status": status,
        "degenerate": degenerate,
        "role": role,
        "requested": {**params, "run_name": name, "profile": profile, "output_dir": str(folder)},
        "effective": params,
        **record,
        "provenance": {"git_commit": "abc"},
    }
    (folder / "result.json").write_text(json.dumps(result))
    fake_fit(val_auc).history.to_csv(folder / "history.csv", index=False)
    return folder


def test_collector_skips_incomplete_runs_and_chooses_on_val_among_runs_that_learned(tmp_path):
    fake_run(tmp_path, "02_custom_cnn", "good", val_auc=0.8)
    fake_run(tmp_path, "02_custom_cnn", "better_but_degenerate", val_auc=0.9, degenerate=True)
    fake_run(tmp_path, "02_custom_cnn", "better_but_untrained", val_auc=0.85, epoch0_val_auc=0.84)
    fake_run(tmp_path, "02_custom_cnn", "crashed", status="failed", val_auc=0.99)
    fake_run(tmp_path, "02_custom_cnn", "smoke", val_auc=0.95, profile="smoke")
    fake_run(tmp_path, "02_custom_cnn", "a_final_fit", val_auc=0.97, role="final")
    fake_run(tmp_path, "03_transfer_learning", "vgg16", status="skipped: no weights: …", kind="transfer")
    table = collect.runs_table(profile="default", out=tmp_path)
    assert sorted(table["run"]) == ["a_final_fit", "better_but_degenerate", "better_but_untrained", "good"]
    rows = table.set_index("run")
    assert rows.loc["better_but_degenerate", "degenerate"] and rows.loc["good", "val_auc"] == 0.8
    assert not rows.loc["better_but_untrained", "learned"]
    assert "not above epoch 0's 0.840" in rows.loc["better_but_untrained", "did_not_learn"]
    assert rows.loc["good", "val_auc_gain"] == pytest.approx(0.2)
    assert collect.choose_on_val(table, "custom") == collect.RunKey("custom", "good")
    assert collect.choose_on_val(table, "transfer") is None
    histories = collect.load_histories(table, out=tmp_path)
    assert list(histories[collect.RunKey("custom", "good")]["val_auc"])[-1] == 0.8
    missing = collect.not_run(out=tmp_path)
    assert set(missing["run"]) == {"crashed", "vgg16"}


def test_fine_tuned_runs_are_chosen_only_where_the_profile_refits_them(tmp_path):
    fake_run(tmp_path, "03_transfer_learning", "head", val_auc=0.8, kind="transfer", fine_tune_layers=0)
    fake_run(
        tmp_path, "03_transfer_learning", "tuned", val_auc=0.9, kind="transfer", fine_tune_layers=20, fine_tune_epochs=1
    )
    table = collect.runs_table(profile="default", out=tmp_path)
    assert collect.choose_on_val(table, "transfer").run == "tuned"
    assert collect.choose_on_val(table, "transfer", fine_tune=False).run == "head"
    epochs = table.set_index("run")["epochs"]  # a fine-tuned row's epochs are its last phase's, like its epochs run
    assert epochs["head"] == 3 and epochs["tuned"] == 1


def test_final_fit_params_refit_the_chosen_configuration_with_one_file_per_seed(tmp_path, monkeypatch):
    from cxr_utils.runs import final_fit

    fake_run(tmp_path, "02_custom_cnn", "run04", val_auc=0.8, learning_rate=0.001)
    fake_run(tmp_path, "02_custom_cnn", "run09", val_auc=0.85, learning_rate=0.0001)
    monkeypatch.setattr(config, "final_fit_settings", lambda profile: {"seeds": 3, "fine_tune": True, "set": {}})
    files = final_fit.write_params("custom", "default", tmp_path)
    assert [f.stem for f in files] == ["final_run09_seed1", "final_run09_seed2", "final_run09_seed3"]
    written = [config.load_params_file(f) for f in files]
    assert [p["seed"] for p in written] == [7, 8, 9]
    assert all(p["role"] == "final" and p["screened_as"] == "run09" and p["learning_rate"] == 0.0001 for p in written)
    assert not set(config.RUNNER_PARAMETERS) & set(written[0])
    assert final_fit.write_params("transfer", "default", tmp_path) == []  # nothing eligible


def test_intervals_are_formatted_per_model_split_and_threshold():
    rows = pd.DataFrame(
        [
            {
                "model": "m",
                "split": "test",
                "threshold": 0.5,
                "metric": metric,
                "value": 0.8,
                "low": 0.7,
                "high": 0.9,
                "n": 10,
            }
            for metric in ("auc", "accuracy")
        ]
    )
    table = tables.with_intervals(rows)
    assert table.loc[0, "auc"] == "0.800 [0.700, 0.900]" and list(table.columns[:4]) == [
        "model",
        "split",
        "threshold",
        "n",
    ]


def png_base64(color: int) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), color, np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_export_leaves_out_code_and_tagged_cells_and_embeds_images(tmp_path):
    nb = nbformat.v4.new_notebook()
    hidden = nbformat.v4.new_markdown_cell("builder notes, not for readers")
    hidden.metadata["tags"] = ["remove_cell"]
    shown = nbformat.v4.new_code_cell("secret_source_code = 1")
    shown.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png_base64(200), "text/plain": "<img>"})]
    otter = nbformat.v4.new_raw_cell("# BEGIN QUESTION\nname: exercise_1")  # a course cell the tags missed
    nb.cells = [hidden, nbformat.v4.new_markdown_cell("## A section"), shown, otter]
    executed = tmp_path / "nb.ipynb"
    nbformat.write(nb, executed)
    figure = tmp_path / "fig.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(figure)
    html = export.export_html(executed, tmp_path / "out", figures=[figure]).read_text()
    assert "A section" in html and "data:image/png;base64" in html
    assert "secret_source_code" not in html and "builder notes" not in html and "BEGIN QUESTION" not in html
    assert (tmp_path / "out" / "figures" / "fig.png").is_file()


def chromium_dom(html_file) -> str:
    chromium = export.chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs Debian's chromium where apt-get can)")
    done = export.headless(chromium, html_file, ["--virtual-time-budget=10000", "--dump-dom"], timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_self_check_catches_a_broken_image(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        f'<html><body><img src="data:image/png;base64,{png_base64(10)}"><img src="missing.png">'
        f"{export.SELF_CHECK}</body></html>"
    )
    assert 'data-images="1/2"' in chromium_dom(page)


SECTIONS = (
    "Introduction",
    "Data",
    "Methods",
    "Results",
    "Comparison with the study",
    "What is the model looking at?",
    "The study's set-up vs ours",
    "Discussion",
    "Limitations",
    "Conclusion",
    "Code and data availability",
)
APPENDICES = ("References", "Appendix A.", "Appendix B. Provenance")
TABLE_CAPTION = re.compile(r"Table (\d+)(?: \((\d+)/(\d+)\))?\.")
REPORT = config.PROJECT_ROOT / "report"


def test_committed_report_renders_with_every_image_numbered_and_no_empty_section():
    page = REPORT / "report.html"
    assert page.is_file(), "report/report.html is missing: run `make report` and commit report/"
    dom = chromium_dom(page)
    loaded, total = map(int, re.search(r'data-images="(\d+)/(\d+)"', dom).groups())
    assert total >= 20 and loaded == total
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(dom, "html.parser")
    assert soup.title.get_text(strip=True) == export.TITLE
    headings = soup.find_all("h2")
    titles = [h.get_text(" ", strip=True) for h in headings]
    for expected in (*SECTIONS, *APPENDICES):
        assert any(expected in t for t in titles), (expected, titles)
    for heading in headings:
        content, node = "", heading.find_next()
        while node is not None and node.name != "h2" and len(content) < 40:
            if node.name in ("p", "table", "img", "li", "h3"):
                content += node.get_text(" ", strip=True) or ("<img>" if node.name == "img" else "")
            node = node.find_next()
        assert len(content) >= 20, f"section '{heading.get_text(strip=True)}' looks empty"
    figures = soup.select("figure.report-figure")
    assert len(figures) == total and all(f.img.get("alt", "").strip() for f in figures)
    numbers = [int(re.match(r"Figure (\d+)\.", f.figcaption.get_text(strip=True)).group(1)) for f in figures]
    assert numbers == list(range(1, len(figures) + 1))
    captions = [int(TABLE_CAPTION.match(c.get_text(strip=True)).group(1)) for c in soup.select("p.table-caption")]
    assert sorted(set(captions)) == list(range(1, max(captions) + 1)) and captions == sorted(captions)


def pdf_text(pdf) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed (make test installs Debian's poppler-utils where apt-get can)")
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def test_committed_pdf_has_every_section_and_figure_on_a_sane_number_of_pages():
    pdf = REPORT / "report.pdf"
    assert pdf.is_file(), "report/report.pdf is missing: run `make report` (with chromium) and commit report/"
    text = pdf_text(pdf)
    for number, section in enumerate(SECTIONS, start=1):
        assert f"{number}. {section}" in text, section
    html = (REPORT / "report.html").read_text()
    shown = re.findall(r'<figure class="report-figure" data-file="([^"]+)">', html)
    exported = sorted(path.name for path in (REPORT / "figures").glob("*.png"))
    assert sorted(shown) == exported, "every exported figure is shown, and only those"
    figures = len(shown)
    for n in range(1, figures + 1):
        assert f"Figure {n}." in text, f"Figure {n} is not in the PDF"
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert 15 <= pages <= 90, pages


def test_pdf_printing_can_fail_the_check(tmp_path):
    """A page missing a section gives a PDF the section check rejects (the check can fail)."""
    page = tmp_path / "short.html"
    page.write_text("<html><head><title>t</title></head><body><h2>1. Introduction</h2><p>text</p></body></html>")
    if export.chromium() is None:
        pytest.skip("chromium is not installed")
    text = pdf_text(export.print_pdf(page))
    assert "1. Introduction" in text and "2. Data" not in text


def test_evaluate_chosen_scores_val_test_external_and_records_unreadable_images(tmp_path):
    from conftest import pattern, save

    from cxr_utils.data import images
    from cxr_utils.modeling import models

    rows = []
    for k in range(24):
        split = ("val", "test", "external")[k % 3]
        path = save(tmp_path / "data" / f"{k}.png", pattern(60 + k, 40))
        rows.append(
            {
                "image_id": f"x:{k}",
                "source": "radiography" if k % 2 else "cohen",
                "path": f"{k}.png",
                "label": "COVID" if (k // 3) % 2 else "NONCOVID",
                "split": split,
                "group_id": f"g{k // 2}",
                "sha256": images.file_sha256(path),
            }
        )
    manifest = pd.DataFrame(rows)
    (tmp_path / "data" / "4.png").unlink()  # a test image that has gone missing
    folder = tmp_path / "run"
    folder.mkdir()
    models.build_custom_cnn(32, 3).save(folder / "model.keras")
    result = {"kind": "custom", "folder": str(folder), "effective": {"image_size": 32, "channels": 3}}
    evaluated = heldout.evaluate_chosen(result, manifest, tmp_path / "data", n_boot=50, seed=1)
    predictions = evaluated["predictions"]
    assert sorted(predictions["split"].unique()) == ["external", "test", "val"]
    assert "x:4" not in set(predictions["image_id"])
    assert evaluated["failures"][["image_id", "split", "reason"]].values.tolist() == [["x:4", "test", "missing_file"]]
    assert set(evaluated["metrics"]) == {"val", "test", "external"} and set(evaluated["curves"]) == {"test", "external"}
    assert evaluated["metrics"]["test"]["0.5"]["auc"]["n_valid"] > 0
    assert 0.0 <= evaluated["threshold"] <= 1.0
    assert set(evaluated["per_source"]["source"]) == {"cohen", "radiography"}


def test_clinical_metrics_table_keeps_the_requested_metrics_in_order():
    rows = pd.DataFrame(
        [
            {"model": "m", "split": "test", "threshold": 0.4, "metric": metric, "value": 0.5, "low": 0.4, "high": 0.6}
            | {"n": 10}
            for metric in ("auc", "npv", "ppv", "brier", "sensitivity", "specificity")
        ]
    )
    table = tables.with_intervals(rows, tables.CLINICAL_METRICS)
    assert list(table.columns[4:]) == ["sensitivity", "specificity", "ppv", "npv", "brier"]
    assert "auc" not in table


def test_the_study_comparison_sets_last_epoch_beside_last_epoch_and_final_fits_beside_the_chosen_run():
    ours = pd.DataFrame(
        {
            "run": ["run02", "run05"],
            "study_run": [2, 5],
            "model": ["custom", "custom"],
            "size": [64, 64],
            "epochs": [5, 5],
            "last_val_accuracy": [0.70, 0.75],
            "last_val_auc": [0.645, 0.777],
            "val_auc": [0.725, 0.802],
            "minutes_per_epoch": [0.1, 0.2],
        }
    )
    final = pd.DataFrame({"screened_as": ["run05", "run05", "run05"], "val_auc": [0.90, 0.92, 0.94]})
    table = study.side_by_side(ours, final).set_index("run")
    theirs = study.table1().set_index("run")
    assert table.loc["run02", "val_auc ours (last)"] == 0.645 and table.loc["run02", "val_auc ours (kept)"] == 0.725
    assert table.loc["run02", "val_auc study (last)"] == theirs.loc[2, "val_auc"]
    assert table.loc["run05", "val_auc ours (final fits)"] == pytest.approx(0.92)
    assert np.isnan(table.loc["run02", "val_auc ours (final fits)"])


def report_words() -> str:
    """The committed report's text as printed (pdftotext), spaces normalised (non-breaking ones too)."""
    return " ".join(pdf_text(REPORT / "report.pdf").replace("\u00a0", " ").split())


def test_committed_report_reads_as_a_paper():
    text = report_words()
    abstract = text[text.index("Abstract") : text.index("1. Introduction")]
    for heading in ("Background.", "Data.", "Methods.", "Results.", "Conclusion."):
        assert heading in abstract, f"the abstract lacks '{heading}'"
    assert "not a diagnostic device" in text and "Intended use." in text
    references = text[text.index("References", text.index("11. Code and data availability")) :]
    entries = re.findall(r"(?:^| )(\d{1,2})\. [A-Z][^\n]*?https?://", references)
    assert len({int(n) for n in entries}) >= 8, entries
    html = (REPORT / "report.html").read_text()
    assert 'data-file="flow.png"' in html, "the flow diagram from sources to splits is not shown"
    for caption in ("Who is in each partition", "positive and negative predictive value", "Terms used in this report"):
        assert caption in text, caption


MACHINE_PATH = re.compile(r"(?<![\w.:/~…])/(?:work|tmp|root|home|Users|var|opt|mnt)/")
RESOLVER = re.compile(r"Errno -?\d+|Name or service not known|Temporary failure in name resolution")


def test_no_machine_path_or_resolver_error_anywhere_in_the_committed_report():
    files = [REPORT / "report.html", *sorted((REPORT / "tables").glob("*.*")), REPORT / "README.md"]
    for path in files:
        text = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", path.read_text(errors="replace"))
        for pattern in (MACHINE_PATH, RESOLVER):
            found = pattern.search(text)
            assert found is None, f"{path.name}: '{text[max(0, found.start() - 40) : found.end() + 40]}'"


def test_the_print_check_passes_on_the_committed_report():
    pytest.importorskip("pdfplumber", reason="pdfplumber (a dev dependency) reads the PDF back")
    from cxr_utils.reporting import layout

    assert layout.print_defects(REPORT / "report.pdf") == []


def test_numbers_in_the_report_text_are_the_tables_numbers():
    """Each kind of number the text states is read from the table the report exports beside it."""
    text = report_words()
    tables_dir = REPORT / "tables"
    heldout = pd.read_csv(tables_dir / "heldout_metrics.csv")
    first = heldout[(heldout["seed_index"] == 1) & (heldout["metric"] == "auc") & (heldout["threshold"] == 0.5)]
    abstract = text[text.index("Results.") : text.index("Conclusion.")]
    for row in first[first["split"] == "test"].itertuples():
        assert f"{row.model} {row.value:.3f} [{row.low:.3f}, {row.high:.3f}]" in abstract, row.model
    groups = pd.read_csv(tables_dir / "cross_source_groups.csv").groupby("group_id")["source"].nunique()
    for sources, n in groups.value_counts().items():
        assert f"{n} group{'s' if n != 1 else ''} span{'' if n != 1 else 's'} {sources} sources" in text
    val = first[first["split"] == "val"]
    for row in val.itertuples():
        assert f"±{(row.high - row.low) / 2:.3f} {row.model}" in text, row.model
    comparison = pd.read_csv(tables_dir / "study_comparison.csv")
    finals = pd.read_csv(tables_dir / "runs.csv")
    finals = finals[finals["role"] == "final"].groupby("screened_as")["val_auc"].mean()
    chosen = comparison.dropna(subset=["val_auc ours (final fits)"])
    assert len(chosen) >= 1
    for _, row in chosen.iterrows():
        assert row["val_auc ours (final fits)"] == pytest.approx(finals[row["run"]]), row["run"]
