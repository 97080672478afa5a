"""Facts about the data, read from the mirror's own files: its README, metadata and images.

For the report's Data section: where each source came from and on what terms
(:func:`mirror_sources`), what the Radiography Database says about itself against what this copy
holds (:func:`radiography_upstream`), and who is in each partition (:func:`demographics`).
Nothing here is typed by hand: every number and sentence is parsed or measured.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..config import ConfigError
from .sources import (
    METADATA_ENCODINGS,
    RADIOGRAPHY_CLASSES,
    READERS,
    UNKNOWN_VIEWS,
    radiography_dataset_dir,
    read_metadata_file,
    source_dir,
)

MIRROR_README = "README.md"
TABLE_COLUMNS = {  # header in the mirror README's table -> column here
    "folder": "folder",
    "upstream": "upstream",
    "commit (date)": "commit",
    "images here": "images_here",
    "notes": "notes",
}
IMAGE_FOLDERS = ("images", "volumes")  # where image files live in every upstream layout
NOT_RECORDED = "not recorded"
PARTITIONS = ("train", "val", "test", "external")
VIEW_CLASSES = ("PA", "AP", "AP Supine", "other", NOT_RECORDED)
SEX_CLASSES = ("F", "M", "other", NOT_RECORDED)


# --------------------------------------------------------------------------- markdown


def strip_markdown(text: str) -> str:
    """Text without ``**`` emphasis and backticks."""
    return re.sub(r"\*\*|`", "", text).strip()


def read_mirror_readme(root: Path) -> tuple[str, Path]:
    """The mirror's README text and its path; a ConfigError names the file when it is missing."""
    path = Path(root) / MIRROR_README
    if not path.is_file():
        raise ConfigError(f"mirror README {path} not found")
    return path.read_text(encoding="utf-8"), path


def _table_cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", inner)]


def parse_source_table(text: str, path: Path) -> pd.DataFrame:
    """The README's markdown table of sources (columns of :data:`TABLE_COLUMNS`), cells as written."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        header = [c.lower() for c in _table_cells(line)] if line.lstrip().startswith("|") else []
        if "folder" not in header or "upstream" not in header:
            continue
        missing = [h for h in TABLE_COLUMNS if h not in header]
        if missing:
            raise ConfigError(f"{path}, line {number + 1}: source table lacks column(s) {missing}")
        if number + 1 >= len(lines) or not re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", lines[number + 1]):
            raise ConfigError(f"{path}, line {number + 2}: expected the table's |---| separator line")
        rows = []
        for k, row in enumerate(lines[number + 2 :], start=number + 3):
            if not row.lstrip().startswith("|"):
                break
            cells = _table_cells(row)
            if len(cells) != len(header):
                raise ConfigError(f"{path}, line {k}: {len(cells)} cells where the header has {len(header)}")
            rows.append(dict(zip(header, cells)))
        if not rows:
            raise ConfigError(f"{path}, line {number + 1}: the source table has no rows")
        return pd.DataFrame(rows)[list(TABLE_COLUMNS)].rename(columns=TABLE_COLUMNS)
    raise ConfigError(f"{path}: no source table (a markdown table with columns {' | '.join(TABLE_COLUMNS)})")


def readme_section(text: str, title: str, path: Path) -> str:
    """The body of the ``## <title>`` section, its lines joined by spaces."""
    lines = text.splitlines()
    starts = [k for k, line in enumerate(lines) if re.fullmatch(rf"#+\s*{re.escape(title)}\s*", line.strip())]
    if not starts:
        raise ConfigError(f"{path}: no '## {title}' section")
    body = []
    for line in lines[starts[0] + 1 :]:
        if line.lstrip().startswith("#"):
            break
        body.append(line.strip())
    return " ".join(part for part in body if part)


# "Figure1 and Actualmed: ...", "Radiography Database: ..." at the start of a sentence.
_NAME = r"[A-Z]\w*(?: [A-Z]\w*)*"
TERMS_LABEL = re.compile(rf"(?:^|(?<=\. ))({_NAME}(?: and {_NAME})*):\s")


def _sources_named(label: str) -> list[str]:
    """Source folders named in a label: a name's first word is the folder's name."""
    names = [name.split()[0].lower() for name in label.split(" and ")]
    return [name for name in names if name in READERS]


def mirror_terms(root: Path) -> dict[str, str]:
    """The README's Terms split per source, plus ``all``: the text before the first source's label."""
    text, path = read_mirror_readme(root)
    section = readme_section(text, "Terms", path)
    labels = list(TERMS_LABEL.finditer(section))
    if not labels:
        raise ConfigError(f"{path}: the Terms section names no source ('<Source>: <terms>')")
    terms = {"all": strip_markdown(section[: labels[0].start()])}
    for label, following in zip(labels, labels[1:] + [None]):
        body = strip_markdown(section[label.end() : following.start() if following else len(section)])
        for source in _sources_named(label.group(1)):
            terms[source] = body
    return terms


# --------------------------------------------------------------------------- measuring sources


def count_image_files(root: Path, source: str) -> int:
    """Files in the source's image folders (``images/``, ``volumes/``, at any depth)."""
    folder = source_dir(root, source)
    return sum(1 for p in folder.rglob("*") if p.is_file() and p.parent.name in IMAGE_FOLDERS)


def metadata_by_path(root: Path, source: str) -> pd.DataFrame:
    """Every metadata column of a source, one row per image path (the first row naming it), with
    the paths the source's reader builds; empty for a source without ``metadata.csv``."""
    if source not in METADATA_ENCODINGS:
        return pd.DataFrame(columns=["path"])
    tidy = READERS[source](root)
    raw = read_metadata_file(root, source)
    rows = raw.iloc[tidy["metadata_row"].to_numpy() - 2].reset_index(drop=True)
    joined = rows.assign(path=tidy["path"].to_numpy(), modality=tidy["modality"].to_numpy())
    return joined.drop_duplicates("path").reset_index(drop=True)


def _licence_counts(meta: pd.DataFrame, present: pd.Series) -> str:
    """``licence: n; ...`` over the rows whose file is present, or "" without a licence column."""
    if "license" not in meta.columns:
        return ""
    values = meta.loc[present, "license"].str.strip().replace("", NOT_RECORDED)
    return "; ".join(f"{name}: {n}" for name, n in values.value_counts().items())


def measure_source(root: Path, source: str) -> dict:
    """Counted on disk: image files, metadata rows, X-ray rows and those naming an absent file."""
    root = Path(root)
    measured = {"image_files": count_image_files(root, source)}
    if source not in METADATA_ENCODINGS:  # Radiography: no per-image metadata
        return {**measured, "metadata_rows": pd.NA, "xray_rows": pd.NA, "xray_rows_file_absent": pd.NA, "licences": ""}
    tidy = READERS[source](root)
    xray = tidy[tidy["modality"].str.lower() == "x-ray"]
    meta = metadata_by_path(root, source)
    present = meta["path"].map(lambda p: (root / p).is_file()) & (meta["modality"].str.lower() == "x-ray")
    return {
        **measured,
        "metadata_rows": len(tidy),
        "xray_rows": len(xray),
        "xray_rows_file_absent": int((~xray["path"].map(lambda p: (root / p).is_file())).sum()),
        "licences": _licence_counts(meta, present),
    }


def mirror_sources(root: Path) -> pd.DataFrame:
    """One row per source in the mirror README's table, as written (markdown stripped), with
    what is measured on disk and the source's terms from the README's Terms section."""
    text, path = read_mirror_readme(root)
    table = parse_source_table(text, path)
    for column in ("folder", "upstream", "commit", "images_here", "notes"):
        table[column] = table[column].map(strip_markdown)
    table.insert(0, "source", table["folder"].map(lambda f: f.strip("/").split("/")[0]))
    commit = table["commit"].str.extract(r"^(?P<commit>\S+)(?:\s*\((?P<date>[^)]*)\))?")
    table["commit"] = commit["commit"]
    table.insert(4, "commit_date", commit["date"].fillna(""))
    unknown = sorted(set(table["source"]) - set(READERS))
    if unknown:
        raise ConfigError(f"{path}: the source table names unknown folder(s) {unknown}")
    measured = pd.DataFrame([measure_source(root, s) for s in table["source"]])
    terms = mirror_terms(root)
    table = pd.concat([table, measured], axis=1)
    table["terms"] = table["source"].map(lambda s: terms.get(s, ""))
    return table


# --------------------------------------------------------------------------- Radiography Database

RADIOGRAPHY_README = "README.md.txt"
_SECTION = re.compile(r"^\*{2,}\s*(?P<title>[^*].*?)\s*:?\s*$")
_SUBSOURCE = re.compile(r"^-\s*(?P<count>\d[\d,]*)\s+(?P<name>.*?)\s*(?:\[(?P<refs>[\d,\s]+)\])?\s*\.?\s*$")


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def _sections(text: str) -> dict[str, list[str]]:
    """``**Title:`` sections of the database README: title -> non-empty body lines."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        match = _SECTION.match(line.strip())
        if match:
            current = match.group("title")
            sections.setdefault(current, [])
        elif line.strip() and not set(line.strip()) <= {"-"}:
            sections.setdefault(current, []).append(line.strip())
    return sections


def _class_pattern(cls: str) -> str:
    """A class folder name as the README writes it (``Lung_Opacity`` -> ``Lung Opacity``)."""
    return re.escape(cls.replace("_", " ")) + r"\b"


def upstream_class_counts(text: str, path: Path) -> tuple[dict[str, int], str]:
    """Counts per class from the README's last sentence that gives a count for every class."""
    sentences = re.split(r"(?<=\.)\s+", " ".join(text.split()))
    for sentence in reversed(sentences):
        counts = {
            cls: re.search(rf"(\d[\d,]*)\s+{_class_pattern(cls)}", sentence, re.IGNORECASE)
            for cls in RADIOGRAPHY_CLASSES
        }
        if all(counts.values()):
            return {cls: _number(m.group(1)) for cls, m in counts.items()}, sentence
    raise ConfigError(f"{path}: no sentence gives a count for every class ({', '.join(RADIOGRAPHY_CLASSES)})")


def class_subsources(text: str) -> dict[str, list[dict]]:
    """Per class, the README's ``-<count> <source> [ref]`` lines: count, name, reference numbers."""
    found: dict[str, list[dict]] = {}
    for title, lines in _sections(text).items():
        rows = [m.groupdict() for m in map(_SUBSOURCE.match, lines) if m]
        classes = [c for c in RADIOGRAPHY_CLASSES if re.match(_class_pattern(c), title, re.IGNORECASE)]
        if rows and classes:
            found[classes[0]] = [
                {"count": _number(r["count"]), "name": r["name"], "refs": re.findall(r"\d+", r["refs"] or "")}
                for r in rows
            ]
    return found


def readme_references(text: str) -> dict[str, str]:
    """The README's numbered references: ``"8"`` -> URL."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s*\[(\d+)\]\s*(\S+)", text, re.MULTILINE)}


def upstream_format(text: str, path: Path) -> tuple[str, tuple[int, int]]:
    """The Formats section's line and the width x height it states."""
    for title, lines in _sections(text).items():
        if title.lower().startswith("format"):
            for line in lines:
                size = re.search(r"(\d+)\s*[*x×]\s*(\d+)", line)
                if size:
                    return line.lstrip("- ").strip(), (int(size.group(1)), int(size.group(2)))
    raise ConfigError(f"{path}: no Formats line with an image size (W*H)")


def measured_images(dataset: Path) -> tuple[dict[str, int], Counter, Counter]:
    """Files per class folder, and (width, height) and pixel mode of every file (headers only)."""
    present, sizes, modes = {}, Counter(), Counter()
    for cls in RADIOGRAPHY_CLASSES:
        folder = dataset / cls / "images"
        files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        present[cls] = len(files)
        for file in files:
            with Image.open(file) as img:
                sizes[img.size] += 1
                modes[img.mode] += 1
    return present, sizes, modes


def expected_in_sample(sample: int, part: int, whole: int) -> tuple[float, float]:
    """Mean and standard deviation of how many of ``part`` land in a random ``sample`` of ``whole``
    (hypergeometric: drawn without replacement)."""
    if whole <= 1 or sample > whole:
        raise ConfigError(f"cannot draw {sample} of {whole}")
    share = part / whole
    variance = sample * share * (1 - share) * (whole - sample) / (whole - 1)
    return sample * share, math.sqrt(variance)


def radiography_upstream(root: Path, paediatric_subsource: str = "Kaggle") -> dict:
    """What the database's README states (counts per class, Normal's sub-sources, format) next to
    what the mirror holds (files per class, measured sizes and modes), and the expected number of
    ``paediatric_subsource`` Normal images (reference [9] of the README, the paediatric
    chest-xray-pneumonia set) in the mirror's random Normal sample."""
    dataset = radiography_dataset_dir(root)
    path = dataset / RADIOGRAPHY_README
    if not path.is_file():
        raise ConfigError(f"Radiography Database README {path} not found")
    text = path.read_text(encoding="utf-8", errors="replace")
    counts, sentence = upstream_class_counts(text, path)
    subsources = class_subsources(text)
    normal = {row["name"]: row["count"] for row in subsources.get("Normal", [])}
    if paediatric_subsource not in normal:
        raise ConfigError(f"{path}: Normal lists no sub-source '{paediatric_subsource}' (found {sorted(normal)})")
    format_line, size = upstream_format(text, path)
    present, sizes, modes = measured_images(dataset)
    mean, sd = expected_in_sample(present["Normal"], normal[paediatric_subsource], counts["Normal"])
    return {
        "readme": str(path),
        "upstream_counts": counts,
        "upstream_sentence": sentence,
        "subsources": subsources,
        "normal_subsources": normal,
        "references": readme_references(text),
        "upstream_format": format_line,
        "upstream_size": size,
        "present": present,
        "sizes_measured": dict(sizes),
        "modes_measured": dict(modes),
        "paediatric_subsource": paediatric_subsource,
        "paediatric_expected": mean,
        "paediatric_sd": sd,
    }


# --------------------------------------------------------------------------- demographics


def view_class(view: str) -> str:
    """PA, AP (also ``AP erect``), AP Supine, other, or not recorded (also a missing value: the
    Radiography Database has no view column, so its manifest rows read back empty)."""
    text = "" if pd.isna(view) else " ".join(str(view).split()).lower()
    if text in UNKNOWN_VIEWS:
        return NOT_RECORDED
    if text == "pa":
        return "PA"
    if text == "ap supine":
        return "AP Supine"
    if text in ("ap", "ap erect"):
        return "AP"
    return "other"


def sex_class(sex: object) -> str:
    """F, M, other, or not recorded (blank or missing)."""
    text = "" if pd.isna(sex) else str(sex).strip().lower()
    if not text:
        return NOT_RECORDED
    return {"f": "F", "female": "F", "m": "M", "male": "M"}.get(text, "other")


def patient_metadata(root: Path, sources: list[str]) -> pd.DataFrame:
    """``path``, ``age`` and ``sex`` as upstream wrote them, for every source with metadata."""
    frames = [metadata_by_path(root, s) for s in sources if s in METADATA_ENCODINGS]
    frames = [f.reindex(columns=["path", "age", "sex"]) for f in frames]
    if not frames:
        return pd.DataFrame(columns=["path", "age", "sex"])
    return pd.concat(frames, ignore_index=True)


def demographics_long(root: Path, manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per manifest image: partition, source, patient, age (number, or the text when it is
    not a number), sex class and view class. Joined to the metadata by ``path``."""
    meta = patient_metadata(Path(root), sorted(manifest["source"].unique()))
    rows = manifest[["path", "source", "split", "image_id", "patient_id", "view"]].merge(meta, on="path", how="left")
    if len(rows) != len(manifest):
        raise ConfigError("manifest paths match more than one metadata row")
    age_text = rows["age"].fillna("").astype(str).str.strip()
    age = pd.to_numeric(age_text, errors="coerce")
    return pd.DataFrame(
        {
            "partition": rows["split"],
            "source": rows["source"],
            "image_id": rows["image_id"],
            # the Radiography reader gives each image its own id as patient id: no patient recorded
            "patient_id": rows["patient_id"].where(rows["patient_id"] != rows["image_id"]),
            "age": age,
            "age_text": age_text.where(age.isna() & (age_text != ""), ""),
            "sex": rows["sex"].map(sex_class),
            "view": rows["view"].map(view_class),
        }
    )


def median_iqr(values: pd.Series) -> str:
    """``"54 (40-67)"``: median (first-third quartile); ``"n/a"`` when there is no value."""
    values = values.dropna()
    if values.empty:
        return "n/a"
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return f"{_short(median)} ({_short(q1)}-{_short(q3)})"


def _short(number: float) -> str:
    """At most one decimal, none when whole: 54, 45.2."""
    return f"{number:.1f}".rstrip("0").rstrip(".")


def summarise_people(rows: pd.DataFrame) -> dict:
    """Images, patients, age and counts of sex and view classes for one set of images."""
    summary = {
        "images": len(rows),
        "patients": int(rows["patient_id"].nunique()),
        "images without patient id": int(rows["patient_id"].isna().sum()),
        "age, median (IQR)": median_iqr(rows["age"]),
        "images with age": int(rows["age"].notna().sum()),
        "age as text": int((rows["age_text"] != "").sum()),
    }
    summary.update({f"sex {c}": int((rows["sex"] == c).sum()) for c in SEX_CLASSES})
    summary.update({f"view {c}": int((rows["view"] == c).sum()) for c in VIEW_CLASSES})
    return summary


def demographics(root: Path, manifest: pd.DataFrame, by_source: bool = True) -> pd.DataFrame:
    """Per partition (train, val, test, external, all) and, with ``by_source``, per source within
    it ("all sources" first): images, patients, age median (IQR) over images with a numeric age,
    sex and view counts. Sources without metadata count as "not recorded"."""
    people = demographics_long(root, manifest)
    partitions = [p for p in PARTITIONS if p in set(people["partition"])] + ["all"]
    rows = []
    for partition in partitions:
        part = people if partition == "all" else people[people["partition"] == partition]
        rows.append({"partition": partition, "source": "all sources", **summarise_people(part)})
        if by_source:
            for source, group in part.groupby("source", sort=True):
                rows.append({"partition": partition, "source": source, **summarise_people(group)})
    return pd.DataFrame(rows).set_index(["partition", "source"])
