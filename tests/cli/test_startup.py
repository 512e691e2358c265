"""A fast start: `ptssnn --help` and `--version` import neither torch nor numpy."""

from __future__ import annotations

import os
import re
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


def test_help_and_cache_listing_are_not_cut_at_80_columns(tmp_path) -> None:
    from typer.testing import CliRunner

    from ptssnn.cli import app

    runner = CliRunner()
    for args in (["benchmark", "--help"], ["train", "--help"], ["features", "extract", "--help"],
                 ["predict", "--help"], ["serve", "--help"]):
        result = runner.invoke(app, args, env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0 and "…" not in result.output, args
        assert max(len(line) for line in result.output.splitlines()) <= 80, args
    benchmark_help = runner.invoke(app, ["benchmark", "--help"], env={"COLUMNS": "80"}).output
    # The whole default is there, wrapped at word or hyphen breaks rather than cut.
    unwrapped = " ".join(re.sub(r"-\n\s+", "-", benchmark_help).split())
    assert "[default: pts-snn,vanilla-snn,ann,probe]" in unwrapped
    # A namespace whose names are longer than their columns: wrapped, not cut.
    folder = tmp_path / "whisper-base-0123456789abcdef0123"
    folder.mkdir()
    (folder / "namespace.json").write_text(
        '{"backbone": {"name": "whisper-base", "padding": "none"}, '
        '"layers": "0,1,2,3,4,5,6", "dtype": "float16", "key": "0123456789abcdef0123"}')
    result = runner.invoke(app, ["features", "cache", "--cache", str(tmp_path)],
                           env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "9abcdef0123" in result.output  # the key's end
