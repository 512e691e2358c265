#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the main job: `ptssnn demo`.
# With no data it runs the whole pipeline on a small synthetic corpus; with --data-root DIR
# (or PTSSNN_DATA) pointing at real corpora it runs the real benchmark. Extra arguments are
# passed to `ptssnn demo`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/ptssnn demo "$@"
