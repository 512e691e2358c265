"""A/B of the spike-fed Linear training kernels: the sixth session's (old_kernels.py, i.e.
``git show 544a78b:src/ptssnn/snn/plif_kernels.py``) against the installed ones, on the two
block-MLP shapes of the training-step benchmark at its firing rates, one thread:

    taskset -c 1 .venv/bin/python benchmarks/results/spike-linear-kernels-ab/sparse_ab.py

"new forward" includes finding the spikes' positions (the old kernel compacted each row
inside the product); "new weight grad" includes building the by-column index from them.
Output of the seventh session's run: output.txt.
"""
import sys, time, numpy as np, torch
sys.path.insert(0, __import__("os").path.dirname(__file__))
torch.set_num_threads(1)
import old_kernels as O
from ptssnn.snn import plif_compiled
from ptssnn.snn.spike_linear import _spike_positions
K = plif_compiled._kernels()
def t(f, n=15):
    ts = []
    for _ in range(n):
        a = time.perf_counter(); f(); ts.append(time.perf_counter() - a)
    return min(ts) * 1e3
g = torch.Generator().manual_seed(0)
for R, Kd, N, dens in [(8000, 256, 672, 0.032), (8000, 672, 256, 0.035)]:
    s = (torch.rand(R, Kd, generator=g) < dens).float()
    wt = torch.randn(Kd, N, generator=g).numpy(); b = np.zeros(N, np.float32)
    gy = torch.randn(R, N, generator=g).numpy()
    out = np.empty((R, N), np.float32); gw = np.empty((Kd, N), np.float32)
    def new_fwd():
        indptr, indices, binary = _spike_positions(K, s)
        K.sparse_matmul_kernel(indptr.numpy(), indices.numpy(), binary, wt, wt, b, out)
        return indptr, indices, binary
    indptr, indices, binary = new_fwd()
    def new_wgrad():
        colptr = np.empty(Kd + 1, np.int64); rows_of = np.empty_like(indices.numpy())
        K.spike_columns_kernel(indptr.numpy(), indices.numpy(), Kd, colptr, rows_of)
        K.sparse_weight_grad_kernel(colptr, rows_of, binary, gw, gy, gw)
    old_fwd = lambda: O.sparse_matmul_kernel(s.numpy(), wt, b, out)
    old_wgrad = lambda: O.sparse_weight_grad_kernel(s.numpy(), gy, gw)
    old_fwd(); old_wgrad(); new_wgrad()
    print(f"[{R},{Kd}]x[{Kd},{N}]: forward old {t(old_fwd):.2f} new {t(new_fwd):.2f} ms; weight grad old {t(old_wgrad):.2f} new {t(new_wgrad):.2f} ms")
    idx = lambda: _spike_positions(K, s)
    mm = lambda: K.sparse_matmul_kernel(indptr.numpy(), indices.numpy(), binary, wt, wt, b, out)
    print(f"    index {t(idx):.2f}  matmul {t(mm):.2f}  density {float((s!=0).float().mean()):.3f} binary {binary}")
