#!/usr/bin/env bash
# Create .venv in the repository root and install ptssnn with every extra and the test tools.
# Idempotent: a second run only checks that everything is there.
#
#   PTSSNN_TORCH   pip requirement for torch (default torch==2.13.0: on the project's
#                  machines a CPU build of it lies on local disk). Elsewhere pick the build
#                  you want, e.g. the CPU wheel index of the PyTorch install selector.
#   PYTHON         interpreter to create the venv with (default python3, needs >= 3.11)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
torch_req="${PTSSNN_TORCH:-torch==2.13.0}"

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
# torch first, on its own, so no other package can pull a different (CUDA) build.
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" install "$torch_req"
"${pip[@]}" install -e ".[all,test]"
# SpikingJelly is only a test reference; its declared dependencies would drag in a
# multi-GB CUDA torch, so it goes in without them (loguru comes from the test extra).
.venv/bin/python -c "import spikingjelly" 2>/dev/null \
    || "${pip[@]}" install --no-deps "spikingjelly==2.0.0" \
    || echo "setup: spikingjelly not installed; its comparison tests will be skipped" >&2
# The independent NIR consumers the export is checked against (tests/export/test_nir_consumers.py),
# also without their declared dependencies (torchvision/torchaudio would pull a CUDA torch).
.venv/bin/python -c "import snntorch, norse, sinabs, nirtorch" 2>/dev/null \
    || "${pip[@]}" install --no-deps "snntorch==1.0.0" "norse==1.1.0" "sinabs==3.1.3" \
        "nirtorch==2.6" "pbr" \
    || echo "setup: NIR consumers not installed; their export tests will be skipped" >&2
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, ptssnn; print("torch", torch.__version__, "ptssnn", ptssnn.__version__)'))"
