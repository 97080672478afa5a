"""How the report prints: numbered figures and tables, number formats, footnotes, identical models."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from cxr_utils.reporting import document, tables


def test_learning_rates_print_in_scientific_notation_and_whole_numbers_without_decimals():
    table = pd.DataFrame({"learning_rate": [1e-4, 1e-3], "epochs": [5.0, 8.0], "val_auc": [0.81234, 0.7]})
    html = document.styled(table).to_html()
    assert "1e-04" in html and "0.000" not in html
    assert ">5<" in html and ">0.812<" in html
    assert document.number_format(pd.Series(["a"])) is None


def test_long_reasons_become_footnotes_kept_whole():
    long = "no weights: no ImageNet weights for backbone 'vgg16'. Looked for a file in many places " * 2
    marks, notes = document.footnotes(pd.Series(["done", long]))
    assert marks.tolist()[0] == "done" and marks.tolist()[1].endswith("… [1]")
    assert len(marks.tolist()[1]) <= document.SHORT_REASON + 6
    assert notes == [f"[1] {' '.join(long.split())}"]


def test_a_repeated_reason_keeps_its_footnote_number_and_the_mark_follows_the_short_form():
    vgg = "skipped: no weights: no ImageNet weights for backbone 'vgg16'. Looked for the file in many places"
    inception = vgg.replace("vgg16", "inceptionv3")
    marks, notes = document.footnotes(pd.Series([inception, vgg, inception]), short=document.short_reason)
    assert marks.tolist() == [
        "not run: no offline ImageNet weights for inceptionv3 [1]",
        "not run: no offline ImageNet weights for vgg16 [2]",
        "not run: no offline ImageNet weights for inceptionv3 [1]",
    ]
    assert len(notes) == 2


def test_markdown_tables_print_numbers_as_the_report_does(tmp_path):
    table = pd.DataFrame(
        {"learning_rate": [1e-4, 1e-3], "filter": [3.0, 8.0], "auc": [0.81234, np.nan], "kind": ["custom", None]}
    )
    tables.to_markdown(table, tmp_path / "runs.md")
    rows = [line.split("|")[1:-1] for line in (tmp_path / "runs.md").read_text().splitlines()[2:]]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["1e-04", "3", "0.812", "custom"],
        ["1e-03", "8", "", ""],
    ]
    assert pd.read_csv(tmp_path / "runs.csv")["learning_rate"].tolist() == [1e-4, 1e-3]  # the CSV keeps full values


def test_identical_kept_models_are_marked():
    table = pd.DataFrame(
        {
            "kind": "custom",
            "run": ["run02", "run08", "run09", "run04"],
            "model": "custom CNN",
            "size": 64,
            "filter": 3,
            "batch_size": 50,
            "optimizer": "RMSprop",
            "learning_rate": [1e-4, 1e-4, 1e-4, 1e-3],
            "activation_output": "sigmoid",
            "params_total": 5,
            "seed": 1,
            "epochs": [5, 8, 10, 5],
            "best_epoch": [2, 2, 7, 2],
            "val_auc": [0.8, 0.8, 0.82, 0.8],
        }
    )
    assert document.identical_models(table) == {"run08": "run02"}


def test_figures_and_tables_are_numbered_as_shown(tmp_path, capsys):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    doc = document.Document()
    doc.figure(path, "First.", "a black square")
    doc.figure(tmp_path / "absent.png", "Never made.", "nothing")
    doc.figure(path, "Second.", "a black square again")
    doc.table(pd.DataFrame({"a": [1]}), "A table.", note="A note.")
    assert (doc.figures, doc.tables, doc.shown) == (2, 1, ["a.png", "a.png"])
    assert document.interval_text(0.81234, 0.7, 0.9) == "0.812 [0.700, 0.900]"
    assert document.interval_text(float("nan"), 0, 0) == "n/a"
    assert document.spread_text(pd.Series([0.8, 0.82, 0.84])) == "0.820 (0.800-0.840)"


def test_a_layer_more_is_another_model_even_at_the_same_val_auc():
    table = pd.DataFrame(
        {
            "kind": "custom",
            "run": ["run12", "run13"],
            "model": "custom CNN",
            "size": 64,
            "filter": 8,
            "batch_size": 50,
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "activation_output": "softmax",
            "seed": 1,
            "epochs": 5,
            "best_epoch": 1,
            "val_auc": 0.5,
            "params_total": [3_874_401, 2_760_033],
        }
    )
    assert document.identical_models(table) == {}


def test_a_missing_weights_status_reads_short_and_names_the_backbone():
    status = (
        "skipped: no weights: no ImageNet weights for backbone 'vgg16'. Looked for "
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 in: a; b; c"
    )
    assert document.short_reason(status) == "not run: no offline ImageNet weights for vgg16"
    assert document.short_reason("failed") == "failed"
    html = document.styled(pd.DataFrame({"val_auc": [0.5]})).to_html()
    assert "val auc" in html and "val_auc" not in html


def test_intervals_print_on_one_line_and_other_text_keeps_its_spaces():
    table = pd.DataFrame({"model": ["custom run02"], "auc": ["0.812 [0.770, 0.851]"]})
    html = document.styled(table).to_html()
    assert "0.812\u00a0[0.770,\u00a00.851]" in html or "0.812&nbsp;[0.770,&nbsp;0.851]" in html
    assert "custom run02" in html


def test_run_messages_lose_machine_paths_and_resolver_errors():
    raw = (
        "no ImageNet weights for backbone 'vgg16'. Looked for vgg16.h5 in: /work/build/outputs/weights/vgg16.h5; "
        "/root/.keras/models/vgg16.h5; Keras download (Exception: URL fetch failure on "
        "https://storage.googleapis.com/keras/vgg16.h5: None -- [Errno -2] Name or service not known)."
    )
    plain = document.plain_message(raw)
    assert "/work/" not in plain and "/root/" not in plain and "Errno" not in plain and "not known" not in plain
    assert "…/outputs/weights/vgg16.h5" in plain and "…/.keras/models/vgg16.h5" in plain
    assert "download from https://storage.googleapis.com/keras/vgg16.h5 failed: no network connection" in plain
    assert document.plain_message("see outputs/weights/ or https://example.org/a/b") == (
        "see outputs/weights/ or https://example.org/a/b"
    )


def test_a_scale_line_prints_once_per_section_until_it_changes(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj.data))
    doc = document.Document()
    for text in ("profile default · 1,500 images", "profile default · 1,500 images", "final fits"):
        doc.scale(text)
    doc.section()
    doc.scale("final fits")
    assert len(shown) == 3 and sum("1,500 images" in html for html in shown) == 1
    assert all('class="scale-line"' in html for html in shown)


def test_table_text_is_escaped_so_that_angle_brackets_show():
    html = document.styled(pd.DataFrame({"meaning": ["runs named <run>_seed2"]})).to_html()
    assert "&lt;run&gt;_seed2" in html and "<run>" not in html


def test_a_wide_table_prints_in_parts_under_one_number(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj.data))
    doc = document.Document()
    wide = pd.DataFrame({"model": ["a"], **{f"m{k}": [0.5] for k in range(6)}})
    doc.table(wide, "Wide.", note="A note.", keep=["model"], max_columns=4)
    doc.table(wide, "Narrow enough.", keep=["model"], max_columns=10)
    assert doc.tables == 2 and len(shown) == 3
    assert "Table 1 (1/2)." in shown[0] and "Table 1 (2/2)." in shown[1] and "Table 2." in shown[2]
    assert all(">a<" in part for part in shown[:2]) and "A note." in shown[1] and "A note." not in shown[0]


def test_intervals_in_prose_are_joined_by_non_breaking_spaces():
    text = "own test AUC 0.812 vs clean 0.790 (difference 0.022 [-0.010, 0.051] includes zero; see [8, 9])"
    joined = document.whole_intervals(text)
    assert "0.022\u00a0[-0.010,\u00a00.051]" in joined and "own test AUC 0.812 vs" in joined
    assert "[8, 9]" in joined  # citations are not intervals


def test_signed_intervals_stay_whole_too():
    assert document.whole_intervals("difference +0.017 [-0.051, +0.090] (paired)") == (
        "difference +0.017\u00a0[-0.051,\u00a0+0.090] (paired)"
    )
    assert document.unbreakable("+0.017 [-0.051, +0.090]") == "+0.017\u00a0[-0.051,\u00a0+0.090]"
