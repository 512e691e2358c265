"""A fast start: `ptssnn --help` and `--version` import neither torch nor numpy."""

from __future__ import annotations

import os
import subprocess
import sys

import ptssnn

PROBE = """
import sys
from typer.testing import CliRunner
from ptssnn.cli import app
for args in (["--help"], ["--version"], ["model", "--help"], ["predict", "--help"],
             ["benchmark", "--help"], ["data", "scan", "--help"], ["features", "--help"]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "numpy", "soundfile", "scipy"})
print("heavy:", ",".join(heavy))
"""


def test_help_imports_no_torch_or_numpy() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "heavy:"


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "ptssnn", "--version"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"ptssnn {ptssnn.__version__}"
