"""The synthetic training step (compiled + bf16 against fused, interleaved, 9 repeats) with
the default glibc allocator or with freed memory retained (``RETAIN=1``), to check that the
allocator setting of ``bench_plif.py``'s training steps does not move the ratio:

    RETAIN=0 taskset -c 1 .venv/bin/python benchmarks/results/step-ab-eighth-session/allocator.py
    RETAIN=1 taskset -c 1 .venv/bin/python benchmarks/results/step-ab-eighth-session/allocator.py
"""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
torch.set_num_threads(1)
if os.environ.get("RETAIN", "1") == "1":
    from ptssnn.processes import retain_freed_memory

    assert retain_freed_memory()
from bench_plif import _interleaved, make_training_step  # noqa: E402

steps = {name: make_training_step(32, 250, 512, name) for name in ("compiled+bf16", "fused")}
for step in steps.values():
    step()
best = {name: min(wall) for name, (wall, _) in _interleaved(steps, 9).items()}
print(f"RETAIN={os.environ.get('RETAIN', '1')}", {k: round(v, 3) for k, v in best.items()},
      f"fused / compiled+bf16 = {best['fused'] / best['compiled+bf16']:.2f}x")
