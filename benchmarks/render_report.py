"""Render ``report.md`` again from a committed ``results.json`` with today's report code
(new tables, same numbers); the plots are drawn into a temporary folder only for their links.

    .venv/bin/python benchmarks/render_report.py benchmarks/results/<run>/results.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ptssnn.benchmark.report import render_report, write_plots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+")
    for path in parser.parse_args().results:
        results = json.loads(path.read_text())
        with tempfile.TemporaryDirectory() as scratch:
            links = write_plots(results, Path(scratch))
        (path.parent / "report.md").write_text(render_report(results, links))
        print(f"wrote {path.parent / 'report.md'}")


if __name__ == "__main__":
    main()
