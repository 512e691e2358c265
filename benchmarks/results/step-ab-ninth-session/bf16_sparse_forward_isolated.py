import numpy as np, time, torch
from numba import njit
from ptssnn.snn import plif_kernels as k
from ptssnn.snn.spike_linear import _spike_positions
torch.set_num_threads(1)

@njit(inline="always", error_model="numpy")
def dec(b):
    return np.uint32(np.uint32(b) << np.uint32(16)).view(np.float32)

@njit(inline="always", error_model="numpy")
def add_rows16(row, source, selected, start, end):
    n_out = row.shape[0]
    i = start
    while i + 4 <= end:
        r0, r1 = source[selected[i]], source[selected[i + 1]]
        r2, r3 = source[selected[i + 2]], source[selected[i + 3]]
        for n in range(n_out):
            row[n] += (dec(r0[n]) + dec(r1[n])) + (dec(r2[n]) + dec(r3[n]))
        i += 4
    while i < end:
        r0 = source[selected[i]]
        for n in range(n_out):
            row[n] += dec(r0[n])
        i += 1

@njit(error_model="numpy")
def spmm16(indptr, indices, weight_bits, bias, out):
    n_out = weight_bits.shape[1]
    for r in range(out.shape[0]):
        row = out[r]
        for n in range(n_out):
            row[n] = bias[n]
        add_rows16(row, weight_bits, indices, indptr[r], indptr[r + 1])

for K, N, p in ((256, 672, 0.076), (256, 672, 0.035), (672, 256, 0.036), (256, 256, 0.028)):
    s = (torch.rand(8000, K) < p).to(torch.bfloat16)
    w = torch.randn(N, K)
    indptr, indices, binary = _spike_positions(k, s)
    wt = w.t().contiguous(); b = torch.zeros(N)
    wt16 = wt.bfloat16()
    bits = wt16.view(torch.int16).numpy().view(np.uint16)
    o1 = torch.empty(8000, N); o2 = torch.empty(8000, N)
    f1 = lambda: k.sparse_matmul_kernel(indptr.numpy(), indices.numpy(), True, wt.numpy(), wt.numpy(), b.numpy(), o1.numpy())
    f2 = lambda: spmm16(indptr.numpy(), indices.numpy(), bits, b.numpy(), o2.numpy())
    f1(); f2()
    ref = (s.float() @ wt16.float())
    print("max diff vs bf16-weight dense", float((o2 - ref).abs().max()))
    res = {}
    for name, f in (("fp32", f1), ("bf16", f2)) * 8:
        t = time.perf_counter(); f(); res[name] = min(res.get(name, 9), time.perf_counter() - t)
    print(K, N, p, {n: "%.2f" % (v * 1e3) for n, v in res.items()})
