"""retain_freed_memory: large tensors reuse the process's pages instead of faulting them in."""

from __future__ import annotations

import subprocess
import sys

import pytest

LOOP = """
import resource, sys
from ptssnn.processes import retain_freed_memory
assert retain_freed_memory() == (sys.argv[1] == "retain")
import torch
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.randn(16, 7, 400, 512)  # 92 MiB (a 50 Hz batch); each temporary is one more
total = 0
for step in range(7):
    before = faults()
    y = ((x - 1) / 2) * 3  # a step's temporaries, freed at the end of the step
    del y
    if step:
        total += faults() - before
print(total)
"""


def _faults(mode: str) -> int:
    # "default": turned off through the environment, as a user with little memory would.
    env = {"OMP_NUM_THREADS": "1", "PATH": "",
           "PTSSNN_RETAIN_FREED_MEMORY": "1" if mode == "retain" else "0"}
    out = subprocess.run([sys.executable, "-c", LOOP, mode], capture_output=True, text=True,
                         check=True, env=env)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_retained_memory_is_not_faulted_in_again_every_step():
    default, retained = _faults("default"), _faults("retain")
    assert default > 6 * 40_000  # 92-MiB temporaries, 4 KiB pages, 6 steps
    assert retained < default / 2  # measured: about a quarter
