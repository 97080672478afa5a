"""Read each upstream source layout into one tidy table, and label it with rules kept as data.

Every reader returns the columns of :data:`SOURCE_COLUMNS`, one row per metadata row (or per
image file, for the Radiography Database which has no per-image metadata). Paths are relative
to the data root. Nothing is dropped here: selection happens in :func:`select_rows`, which says
why each dropped row was dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from ..config import ConfigError

SOURCES = ("figure1", "cohen", "radiography", "actualmed")
LABELS = ("COVID", "NONCOVID")
SOURCE_COLUMNS = [
    "image_id",
    "source",
    "path",
    "finding",
    "view",
    "modality",
    "patient_id",
    "metadata_row",
]
EXCLUSION_COLUMNS = ["source", "path", "image_id", "reason", "detail"]
RULES_FILE = Path(__file__).parent.parent / "resources" / "label_rules.csv"
RADIOGRAPHY_CLASSES = {  # class folder -> finding
    "COVID": "COVID-19",
    "Normal": "No finding",
    "Lung_Opacity": "Lung opacity",
    "Viral Pneumonia": "Viral pneumonia",
}
METADATA_ENCODINGS = {"figure1": "latin-1", "cohen": "utf-8", "actualmed": "utf-8"}  # sources with a metadata.csv
FRONTAL_VIEW = re.compile(r"^(AP|PA)\b", re.IGNORECASE)
UNKNOWN_VIEWS = {"", "?", "unknown"}


def source_dir(root: Path, source: str) -> Path:
    """The folder of one source under the data root, with a clear error when it is missing."""
    if source not in SOURCES:
        raise ConfigError(f"unknown source '{source}' (known: {', '.join(SOURCES)})")
    path = Path(root) / source
    if not path.is_dir():
        raise ConfigError(f"source folder {path} not found under the data root {root}")
    return path


def _read_metadata(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    if not path.is_file():
        raise ConfigError(f"metadata file {path} not found")
    table = pd.read_csv(path, encoding=encoding, dtype=str, keep_default_na=False)
    table.columns = [c.strip() for c in table.columns]
    return table


def read_metadata_file(root: Path, source: str) -> pd.DataFrame:
    """A source's ``metadata.csv`` as upstream wrote it: every column, as text, row order kept."""
    if source not in METADATA_ENCODINGS:
        raise ConfigError(f"source '{source}' has no metadata.csv (sources with one: {', '.join(METADATA_ENCODINGS)})")
    return _read_metadata(source_dir(root, source) / "metadata.csv", encoding=METADATA_ENCODINGS[source])


def _require(table: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ConfigError(f"{path}: expected column(s) {missing} not found")


def _tidy(source: str, table: pd.DataFrame, paths: pd.Series, patients: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": source + ":" + paths.map(lambda p: Path(p).name),
            "source": source,
            "path": paths.values,
            "finding": table["finding"].str.strip().values,
            "view": table.get("view", pd.Series("", index=table.index)).str.strip().values,
            "modality": table.get("modality", pd.Series("X-ray", index=table.index)).str.strip().values,
            "patient_id": (source + ":" + patients.str.strip()).values,
            "metadata_row": table.index.values + 2,  # 1-based, after the header line
        },
        columns=SOURCE_COLUMNS,
    )


def read_figure1(root: Path) -> pd.DataFrame:
    """Figure1: ``metadata.csv`` (latin-1) and ``images/<patientid>.<ext>``."""
    folder = source_dir(root, "figure1")
    meta_path = folder / "metadata.csv"
    table = _read_metadata(meta_path, encoding=METADATA_ENCODINGS["figure1"])
    _require(table, ["patientid", "finding", "view", "modality"], meta_path)
    by_stem = {p.stem: p.name for p in sorted((folder / "images").glob("*"))}
    names = table["patientid"].map(lambda pid: by_stem.get(pid.strip(), f"{pid.strip()}.jpg"))
    # Figure1 ids like COVID-00003a/-00003b are images of one patient: strip the letter.
    patients = table["patientid"].str.replace(r"[a-z]$", "", regex=True)
    return _tidy("figure1", table, "figure1/images/" + names, patients)


def read_cohen(root: Path) -> pd.DataFrame:
    """Cohen: ``metadata.csv`` with ``folder``/``filename`` (X-ray and CT rows)."""
    folder = source_dir(root, "cohen")
    meta_path = folder / "metadata.csv"
    table = _read_metadata(meta_path)
    _require(table, ["patientid", "finding", "view", "modality", "folder", "filename"], meta_path)
    paths = "cohen/" + table["folder"].str.strip() + "/" + table["filename"].str.strip()
    return _tidy("cohen", table, paths, table["patientid"])


def read_actualmed(root: Path) -> pd.DataFrame:
    """Actualmed: ``metadata.csv`` and ``images/<imagename>``."""
    folder = source_dir(root, "actualmed")
    meta_path = folder / "metadata.csv"
    table = _read_metadata(meta_path)
    _require(table, ["patientid", "finding", "view", "modality", "imagename"], meta_path)
    return _tidy("actualmed", table, "actualmed/images/" + table["imagename"].str.strip(), table["patientid"])


def radiography_dataset_dir(root: Path) -> Path:
    """The v4 dataset folder: ``radiography/COVID-19_Radiography_Dataset`` (or its parent)."""
    folder = source_dir(root, "radiography")
    for candidate in [folder / "COVID-19_Radiography_Dataset", folder]:
        if any((candidate / cls / "images").is_dir() for cls in RADIOGRAPHY_CLASSES):
            return candidate
    raise ConfigError(
        f"{folder}: no class folders found; expected <CLASS>/images/<CLASS>-N.png for classes "
        f"{', '.join(RADIOGRAPHY_CLASSES)}"
    )


def read_radiography(root: Path) -> pd.DataFrame:
    """Radiography Database v4: ``<CLASS>/images/<CLASS>-N.png``; optional ``<CLASS>.metadata.xlsx``."""
    dataset = radiography_dataset_dir(root)
    frames = []
    for cls, finding in RADIOGRAPHY_CLASSES.items():
        images = dataset / cls / "images"
        if not images.is_dir():
            continue
        files = sorted(p for p in images.iterdir() if p.is_file())
        rel = [p.relative_to(root).as_posix() for p in files]
        table = pd.DataFrame({"finding": finding, "view": "", "modality": "X-ray"}, index=range(len(rel)))
        stems = pd.Series([p.stem for p in files], dtype=str)
        frame = _tidy("radiography", table, pd.Series(rel, dtype=str), "radiography:" + stems)
        frame["patient_id"] = frame["image_id"]  # no patient ids upstream: one image, one "patient"
        frame["metadata_row"] = 0
        frames.append(_with_radiography_urls(frame, dataset / f"{cls}.metadata.xlsx"))
    return pd.concat(frames, ignore_index=True)


def _with_radiography_urls(frame: pd.DataFrame, xlsx: Path) -> pd.DataFrame:
    """Add the upstream URL of each image from the optional ``*.metadata.xlsx``."""
    if not xlsx.is_file():
        return frame
    meta = pd.read_excel(xlsx, dtype=str)
    meta.columns = [c.strip().upper() for c in meta.columns]
    if {"FILE NAME", "URL"} <= set(meta.columns):
        urls = dict(zip(meta["FILE NAME"].str.strip(), meta["URL"].str.strip()))
        frame["origin_url"] = frame["path"].map(lambda p: urls.get(Path(p).stem, ""))
    return frame


READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "figure1": read_figure1,
    "cohen": read_cohen,
    "radiography": read_radiography,
    "actualmed": read_actualmed,
}


def read_sources(root: Path, sources: Iterable[str] = SOURCES) -> pd.DataFrame:
    """Read the named sources into one table (columns :data:`SOURCE_COLUMNS`)."""
    sources = list(sources)
    unknown = [s for s in sources if s not in READERS]
    if unknown:
        raise ConfigError(f"unknown source(s) {unknown} (known: {', '.join(SOURCES)})")
    frames = [READERS[s](Path(root)) for s in sources]
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- labels


def label_rules(mode: str) -> pd.DataFrame:
    """The ordered label rules of one mode (``default`` or ``seed``); first match wins."""
    rules = pd.read_csv(RULES_FILE, dtype=str, keep_default_na=False)
    chosen = rules[rules["mode"] == mode].reset_index(drop=True)
    if chosen.empty:
        modes = ", ".join(sorted(rules["mode"].unique()))
        raise ConfigError(f"unknown label_mode '{mode}' (known: {modes})")
    return chosen


def apply_label_rules(table: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Add ``label`` (COVID, NONCOVID, UNKNOWN or SKIP) and ``label_rule`` (the rule's note)."""
    rules = label_rules(mode)
    compiled = [
        (r.source, re.compile(r.finding_regex), re.compile(r.path_regex), r.label, r.note) for r in rules.itertuples()
    ]

    def first_match(row: pd.Series) -> tuple[str, str]:
        for source, finding_re, path_re, label, note in compiled:
            if (
                source in ("*", row["source"])
                and finding_re.fullmatch(row["finding"])
                and path_re.fullmatch(row["path"])
            ):
                return label, note
        raise ConfigError(f"no {mode} label rule matches {row['path']} (finding {row['finding']!r})")

    out = table.copy()
    matched = out.apply(first_match, axis=1, result_type="expand")
    out["label"], out["label_rule"] = matched[0], matched[1]
    return out


def label_mode_comparison(table: pd.DataFrame, modes: Iterable[str] = ("default", "seed")) -> pd.DataFrame:
    """Rows per source and label under each label mode (before any file is opened)."""
    counts = {mode: apply_label_rules(table, mode).groupby(["source", "label"]).size() for mode in modes}
    return pd.DataFrame(counts).fillna(0).astype(int)


def is_frontal(view: str) -> bool:
    """PA/AP views (any AP variant), and views not recorded; lateral, axial, coronal are not."""
    return view.strip().lower() in UNKNOWN_VIEWS or bool(FRONTAL_VIEW.match(view.strip()))


def select_rows(
    table: pd.DataFrame,
    *,
    xray_only: bool = True,
    views: str | list[str] = "frontal",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep labelled rows that pass the filters; return (kept, exclusions with reasons)."""
    reasons = pd.Series("", index=table.index, dtype=object)
    details = pd.Series("", index=table.index, dtype=object)

    def exclude(mask: pd.Series, reason: str, detail: pd.Series | str) -> None:
        mask = mask & (reasons == "")
        reasons[mask] = reason
        details[mask] = detail[mask] if isinstance(detail, pd.Series) else detail

    exclude(
        table["path"].duplicated(),
        "duplicate_metadata_row",
        "metadata row " + table["metadata_row"].astype(str) + " repeats an earlier row's file",
    )
    exclude(table["label"] == "SKIP", "label_rules_skip", table["label_rule"])
    exclude(
        table["label"] == "UNKNOWN",
        "label_unknown",
        "finding " + table["finding"].map(repr) + ": " + table["label_rule"],
    )
    if xray_only:
        exclude(table["modality"].str.lower() != "x-ray", "not_xray", "modality " + table["modality"])
    if views == "frontal":
        exclude(~table["view"].map(is_frontal), "view_filtered", "view " + table["view"] + " is not frontal")
    elif isinstance(views, str) and views != "all":
        raise ConfigError(f"views '{views}' is not 'frontal', 'all' or a list of view names")
    elif views != "all":
        allowed = {v.lower() for v in views}
        exclude(~table["view"].str.lower().isin(allowed), "view_filtered", "view " + table["view"] + " not selected")
    dropped = reasons != ""
    exclusions = table.loc[dropped, ["source", "path", "image_id"]].assign(
        reason=reasons[dropped], detail=details[dropped]
    )
    return table.loc[~dropped].reset_index(drop=True), exclusions[EXCLUSION_COLUMNS].reset_index(drop=True)


def orphan_files(root: Path, table: pd.DataFrame, sources: Iterable[str]) -> pd.DataFrame:
    """Image files on disk that no metadata row names (exclusion reason ``no_metadata``)."""
    named = set(table["path"])
    rows = []
    for source in sources:
        if source == "radiography":
            continue  # its table is built from the files themselves
        for path in sorted((Path(root) / source).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and path.parent.name in ("images", "volumes") and rel not in named:
                rows.append(
                    {
                        "source": source,
                        "path": rel,
                        "image_id": f"{source}:{path.name}",
                        "reason": "no_metadata",
                        "detail": "file not named in metadata.csv",
                    }
                )
    return pd.DataFrame(rows, columns=EXCLUSION_COLUMNS)
