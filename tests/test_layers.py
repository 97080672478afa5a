"""The package's layers (the `layers` contract in pyproject.toml): kept by the package, and broken
by an upward import planted in a copy of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cxr_utils import config

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the package under ``root`` with ``root``'s pyproject.toml."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200"},  # the copy ahead of the editable install
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_layers():
    done = lint_imports(config.PROJECT_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    shutil.copytree(
        config.PROJECT_ROOT / "cxr_utils", tmp_path / "cxr_utils", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(config.PROJECT_ROOT / "pyproject.toml", tmp_path)
    planted = tmp_path / "cxr_utils" / "data" / "datasets.py"
    planted.write_text(planted.read_text() + "\nfrom ..reporting import collect  # data must not import reporting\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "0 kept, 1 broken" in done.stdout
    assert "cxr_utils.data.datasets -> cxr_utils.reporting.collect" in done.stdout
