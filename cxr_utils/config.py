"""Settings and parameters: data root, output folder, params files, profiles, validation.

A notebook's parameters are declared once, in its cell tagged ``parameters``, as
``name: Type = default  # help``. Everything else (the runner's checks, the notebook's own
checks, the README table) reads that cell through :func:`notebook_parameters`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
PROFILES_DIR = PROJECT_ROOT / "params" / "profiles"
SHARED_DATA_ROOT = PROJECT_ROOT.parent / "shared" / "cxr-data"

# Settings read from the environment.
DATA_ROOT_ENV = "CXR_DATA_ROOT"
OUTPUT_DIR_ENV = "CXR_OUTPUT_DIR"
WEIGHTS_DIR_ENV = "CXR_WEIGHTS_DIR"
OFFLINE_ENV = "CXR_OFFLINE"
PRECISION_ENV = "CXR_PRECISION"  # a dtype policy for every run whose precision is auto
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"  # TensorFlow's own switch; read once, when TensorFlow loads

# Parameters every notebook has, which the runner fills in (run name, folder, profile).
RUNNER_PARAMETERS = ("run_name", "output_dir", "profile")


class ConfigError(ValueError):
    """A setting, params file or parameter value is wrong; the message names it."""


# --------------------------------------------------------------------------- the CPU

CPUINFO = Path("/proc/cpuinfo")
# The flags for which TensorFlow's Linux wheels turn oneDNN on by themselves
# (tensorflow/core/util/port.cc, DefaultOneDnnPolicy); on other x86 CPUs they use Eigen's kernels.
TF_ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def cpu_description(cpuinfo: Path = CPUINFO) -> tuple[str, set[str]]:
    """The CPU model name and its feature flags (empty where /proc/cpuinfo is absent)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "unknown", set()
    model, flags = "unknown", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def use_onednn() -> None:
    """Turn TensorFlow's oneDNN kernels on unless ``TF_ENABLE_ONEDNN_OPTS`` is already set.

    TensorFlow turns them on only on CPUs with VNNI, AVX512-BF16 or AMX; on an AVX2-only CPU its
    Eigen kernels trained the grid's 8x8 and 12x12 CNNs about 2x slower in float32
    (benchmarks/flops.py --compare-kernels). Called when ``cxr_utils`` is imported, before any
    TensorFlow import, so notebooks and every kernel the runner starts inherit it; set the
    variable to 0 to force Eigen's kernels."""
    os.environ.setdefault(ONEDNN_ENV, "1")


THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def thread_limits() -> dict[str, str]:
    """The thread-pool limits this process was started with (local Dask workers set each to
    their share of the cores); empty when none is set: TensorFlow then uses every core."""
    return {name: os.environ[name] for name in THREAD_ENV if name in os.environ}


def cpu_kernels(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """Which of TensorFlow's CPU kernels this process uses (oneDNN or Eigen), and what TensorFlow
    would have chosen by itself on this CPU (recorded in every ``result.json``)."""
    _, flags = cpu_description(cpuinfo)
    setting = os.environ.get(ONEDNN_ENV, "")
    tf_default = any(flag in flags for flag in TF_ONEDNN_DEFAULT_FLAGS)
    onednn = setting.lower() in ("1", "true") if setting else tf_default
    return {
        "library": "oneDNN" if onednn else "Eigen",
        ONEDNN_ENV: setting or None,
        "tensorflow_default_on_this_cpu": "oneDNN" if tf_default else "Eigen",
    }


# --------------------------------------------------------------------------- folders


def data_root_setting(explicit: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Where the data root is and which setting says so (the folder may not exist yet):
    explicit value, else env ``CXR_DATA_ROOT``, else the shared mirror beside the checkout when
    it exists, else ``data/raw/`` in the project."""
    if explicit:
        root, origin = Path(explicit), "the data_root parameter"
    elif os.environ.get(DATA_ROOT_ENV):
        root, origin = Path(os.environ[DATA_ROOT_ENV]), f"env {DATA_ROOT_ENV}"
    elif SHARED_DATA_ROOT.is_dir():
        root, origin = SHARED_DATA_ROOT, "the shared mirror"
    else:
        root, origin = PROJECT_ROOT / "data" / "raw", "the default data/raw/"
    return root.expanduser().resolve(), origin


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root (see :func:`data_root_setting`); an error names it when it does not exist."""
    root, origin = data_root_setting(explicit)
    if not root.is_dir():
        raise ConfigError(
            f"data root {root} (from {origin}) does not exist. Set CXR_DATA_ROOT to the folder "
            "holding figure1/, cohen/, radiography/ and actualmed/, or fetch the data with "
            "`python -m cxr_utils data download`."
        )
    return root


def output_root() -> Path:
    """Where runs write: env ``CXR_OUTPUT_DIR``, else ``outputs/`` in the project."""
    return Path(os.environ.get(OUTPUT_DIR_ENV) or PROJECT_ROOT / "outputs").resolve()


def cache_dir() -> Path:
    """Caches (decoded images, features) live under the output root, never in the data root."""
    return output_root() / "cache"


def run_dir(notebook: str, run_name: str, explicit: str | None = None) -> Path:
    """``outputs/<notebook-stem>/<run-name>/`` unless an explicit folder is given."""
    if explicit:
        path = Path(explicit)
        return (path if path.is_absolute() else PROJECT_ROOT / path).resolve()
    return output_root() / Path(notebook).stem / run_name


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Parameter:
    """One entry of a notebook's ``parameters`` cell."""

    name: str
    annotation: str
    default: Any
    help: str


def notebook_path(notebook: str | os.PathLike) -> Path:
    """Resolve ``02_custom_cnn``, ``02_custom_cnn.ipynb`` or a path to the notebook file."""
    path = Path(notebook)
    if path.suffix != ".ipynb":
        path = path.with_suffix(".ipynb")
    if not path.exists() and not path.is_absolute():
        path = NOTEBOOKS_DIR / path.name
    if not path.exists():
        raise ConfigError(f"notebook {notebook} not found (looked for {path})")
    return path


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, Parameter]:
    """Read the ``parameters`` cell of a notebook (via papermill's own parser)."""
    import papermill

    path = notebook_path(notebook)
    found = papermill.inspect_notebook(str(path))
    if not found:
        raise ConfigError(f"{path.name} has no cell tagged 'parameters'")
    spec = {}
    for name, info in found.items():
        annotation = info.get("inferred_type_name") or "None"
        if annotation == "None":
            raise ConfigError(f"{path.name}: parameter '{name}' has no type annotation")
        spec[name] = Parameter(name, annotation, _literal(info["default"]), info.get("help", ""))
    return spec


def _literal(text: str) -> Any:
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def _accepts(annotation: str, value: Any) -> bool:
    """Does ``value`` fit an annotation such as ``int``, ``Optional[str]``, ``Union[str, list]``?"""
    ann = annotation.replace(" ", "")
    if ann.startswith("Optional[") and ann.endswith("]"):
        return value is None or _accepts(ann[len("Optional[") : -1], value)
    if ann.startswith("Union[") and ann.endswith("]"):
        return any(_accepts(part, value) for part in ann[len("Union[") : -1].split(","))
    base = ann.split("[", 1)[0].lower()
    if base not in _TYPES:
        raise ConfigError(f"unsupported parameter annotation '{annotation}'")
    if isinstance(value, bool) and base in ("int", "float"):
        return False
    return isinstance(value, _TYPES[base])


def validate_parameters(values: Mapping[str, Any], spec: Mapping[str, Parameter], where: str) -> None:
    """Reject unknown keys and ill-typed values, naming the key, value and expected type."""
    problems = []
    for key, value in values.items():
        if key not in spec:
            known = ", ".join(sorted(spec))
            problems.append(f"unknown key '{key}' (known: {known})")
        elif not _accepts(spec[key].annotation, value):
            problems.append(f"key '{key}' = {value!r} ({type(value).__name__}) is not {spec[key].annotation}")
    problems += non_finite(values)
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))


def non_finite(values: Mapping[str, Any]) -> list[str]:
    """Problems for NaN or infinite numbers, also inside lists and mappings: no setting means
    "not a number", and every comparison with NaN is False, so it would pass every bound."""

    def bad(value: Any) -> bool:
        if isinstance(value, float):
            return not math.isfinite(value)
        if isinstance(value, (list, tuple)):
            return any(bad(v) for v in value)
        if isinstance(value, Mapping):
            return any(bad(v) for v in value.values())
        return False

    return [f"key '{key}' = {value!r} is not a finite number" for key, value in values.items() if bad(value)]


def below_minimum(
    params: Mapping[str, Any], minimums: Mapping[str, float], above: Mapping[str, float] | None = None
) -> list[str]:
    """Problems for numbers that are impossible before anything runs: a key below its minimum
    (``minimums``: value >= minimum) or not above a bound (``above``: value > bound). None
    (meaning "all" or "unset") passes. Each message names the key and the value."""
    problems = []
    for bounds, strict in ((minimums, False), (above or {}, True)):
        for key, bound in bounds.items():
            value = params.get(key)
            if value is not None and (value <= bound if strict else value < bound):
                problems.append(f"key '{key}' = {value!r} must be {'>' if strict else '>='} {bound}")
    return problems


def not_one_of(params: Mapping[str, Any], choices: Mapping[str, Any]) -> list[str]:
    """Problems for keys whose value is not among its choices."""
    problems = []
    for key, allowed in choices.items():
        if key in params and params[key] not in allowed:
            problems.append(f"key '{key}' = {params[key]!r} is not one of {', '.join(map(str, allowed))}")
    return problems


# Keras dtype policies a run may ask for ("auto" picks one for the machine: modeling.precision).
PRECISION_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")

# Keys every training notebook (02, 03) has, with their allowed values and their minimums.
TRAINING_CHOICES = {
    "precision": ("auto", *PRECISION_POLICIES),
    "role": ("screening", "final"),
}
TRAINING_MINIMUMS = {
    "early_stopping_patience": 1,
    "batch_size": 1,
    "epochs": 1,
    "max_train_images": 2,
    "max_val_images": 2,
}


def load_params_file(path: str | os.PathLike) -> dict[str, Any]:
    """A flat YAML mapping of parameter names to values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"params file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must be a mapping of parameter: value")
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if nested:
        raise ConfigError(f"params file {path} must be flat; nested keys: {', '.join(nested)}")
    return data


# --------------------------------------------------------------------------- profiles


def available_profiles() -> list[str]:
    """Names of the profiles in ``params/profiles/``."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


PROFILE_SECTIONS = ("scale", "caps", "set")


def load_profile(name: str) -> dict[str, Any]:
    """A profile: ``scale`` (multiply numbers), ``caps`` (upper bounds), ``set`` (overrides) for
    every notebook; ``notebooks: {<stem>: {scale/caps/set/final_set/only}}`` for one notebook only
    (``only``: the main job runs just these of the notebook's params files); and
    ``final_fit`` (``seeds``, ``fine_tune``, ``set``) for the final fits of the chosen configurations
    (a notebook's ``final_set`` adds to and overrides ``final_fit.set`` for its final fits); and
    ``screening_seeds`` (``top``, ``seeds``): how many leading screening configurations are run
    again, and with how many seeds in all, before one is chosen."""
    empty = {
        "rules": {section: {} for section in PROFILE_SECTIONS},
        "notebooks": {},
        "final_fit": dict(FINAL_FIT),
        "screening_seeds": dict(SCREENING_SEEDS),
    }
    if name in ("none", ""):
        return empty
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"profile '{name}' not found (known: {', '.join(available_profiles())})")
    data = yaml.safe_load(path.read_text()) or {}
    if non_finite(data):
        raise ConfigError(f"profile {path}: " + "; ".join(non_finite(data)))
    unknown = set(data) - {"description", "notebooks", "final_fit", "screening_seeds", *PROFILE_SECTIONS}
    if unknown:
        raise ConfigError(f"profile {path}: unknown sections {sorted(unknown)}")
    notebooks = data.get("notebooks") or {}
    for stem, rules in notebooks.items():
        wrong = set(rules or {}) - {*PROFILE_SECTIONS, "final_set", "only"}
        if wrong:
            raise ConfigError(f"profile {path}: notebooks.{stem} has unknown sections {sorted(wrong)}")
        only = (rules or {}).get("only")
        if only is not None and not (isinstance(only, list) and all(isinstance(run, str) for run in only)):
            raise ConfigError(f"profile {path}: notebooks.{stem}.only = {only!r} must be a list of run names")
    final_fit = {**FINAL_FIT, **(data.get("final_fit") or {})}
    if set(final_fit) - set(FINAL_FIT):
        raise ConfigError(f"profile {path}: final_fit has unknown keys {sorted(set(final_fit) - set(FINAL_FIT))}")
    screening_seeds = {**SCREENING_SEEDS, **(data.get("screening_seeds") or {})}
    if set(screening_seeds) - set(SCREENING_SEEDS):
        unknown_keys = sorted(set(screening_seeds) - set(SCREENING_SEEDS))
        raise ConfigError(f"profile {path}: screening_seeds has unknown keys {unknown_keys}")
    for key, value in screening_seeds.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"profile {path}: screening_seeds.{key} = {value!r} must be a whole number >= 1")
    return {
        "rules": {section: data.get(section) or {} for section in PROFILE_SECTIONS},
        "notebooks": {
            stem: {
                **{section: (rules or {}).get(section) or {} for section in (*PROFILE_SECTIONS, "final_set")},
                "only": (rules or {}).get("only"),
            }
            for stem, rules in notebooks.items()
        },
        "final_fit": final_fit,
        "screening_seeds": screening_seeds,
    }


# A profile's final fits: how many seeds, whether fine-tuned configurations are refitted, and the
# values every final-fit run gets (applied after all other rules).
FINAL_FIT = {"seeds": 3, "fine_tune": True, "set": {}}
# Successive halving on the screening runs: the ``top`` eligible configurations of a kind (ties
# included) are run again until each has ``seeds`` seeds; the choice is then on the mean.
SCREENING_SEEDS = {"top": 4, "seeds": 3}


def profile_only(profile: str, notebook: str) -> list[str] | None:
    """The runs (params file names) a profile keeps of a notebook's stage (``notebooks: {<stem>:
    {only: [...]}}``), or None when it keeps them all."""
    return load_profile(profile)["notebooks"].get(Path(notebook).stem, {}).get("only")


def screening_seed_settings(profile: str) -> dict[str, int]:
    """The ``screening_seeds`` section of a profile (defaults: the top 4, 3 seeds each)."""
    return load_profile(profile)["screening_seeds"]


def final_fit_settings(profile: str) -> dict[str, Any]:
    """The ``final_fit`` section of a profile (defaults: 3 seeds, fine-tuning allowed, nothing set)."""
    return load_profile(profile)["final_fit"]


def profile_rules(profile: str, notebook: str | None = None) -> dict[str, dict[str, Any]]:
    """The scale/caps/set rules a profile applies to one notebook: its general rules, with the
    notebook's own rules (``notebooks: {<stem>: ...}``) added and taking precedence."""
    return _rules_for(load_profile(profile), notebook)


def _rules_for(loaded: dict[str, Any], notebook: str | None) -> dict[str, dict[str, Any]]:
    own = _own_rules(loaded, notebook)
    return {section: {**loaded["rules"][section], **own.get(section, {})} for section in PROFILE_SECTIONS}


def _own_rules(loaded: dict[str, Any], notebook: str | None) -> dict[str, dict[str, Any]]:
    return loaded["notebooks"].get(Path(notebook).stem, {}) if notebook else {}


def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return max(1, round(value * factor)) if isinstance(value, int) else value * factor


def apply_profile(
    params: Mapping[str, Any], profile: str, notebook: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Overlay a profile on a run's params. Returns (effective params, what changed).

    In order: ``scale`` multiplies a number (integers stay integers, at least 1), so a grid
    keeps its contrasts (20/30/40 epochs stay distinct); ``caps`` lower a number (a value of
    None, meaning "all", becomes the cap); ``set`` replaces a value, and a final-fit run
    (``role: final``) then takes the profile's ``final_fit.set`` and its notebook's
    ``final_set``. Only keys the run has are
    touched; rules under ``notebooks: {<stem>: ...}`` apply to that notebook only.
    """
    loaded = load_profile(profile)
    rules = _rules_for(loaded, notebook)
    effective = dict(params)
    for key, factor in rules["scale"].items():
        if key in effective and effective[key] is not None:
            effective[key] = _scaled(effective[key], factor)
    for key, cap in rules["caps"].items():
        if key in effective and cap is not None:
            value = effective[key]
            effective[key] = cap if value is None else min(value, cap)
    final = {}
    if params.get("role") == "final":
        final = {**loaded["final_fit"]["set"], **_own_rules(loaded, notebook).get("final_set", {})}
    for key, value in {**rules["set"], **final}.items():
        if key in effective:
            effective[key] = value
    changed = {
        key: {"requested": params[key], "effective": effective[key]} for key in params if effective[key] != params[key]
    }
    return effective, changed


def collect_parameters(
    notebook: str, namespace: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """In a notebook: gather its parameters from ``globals()``, validate them, apply the profile.

    Returns (requested, effective, changed-by-profile).
    """
    spec = notebook_parameters(notebook)
    missing = [name for name in spec if name not in namespace]
    if missing:
        raise ConfigError(f"{notebook}: parameters not defined: {missing}")
    requested = {name: namespace[name] for name in spec}
    validate_parameters(requested, spec, where=notebook)
    effective, changed = apply_profile(requested, requested.get("profile") or "none", notebook)
    return requested, effective, changed
