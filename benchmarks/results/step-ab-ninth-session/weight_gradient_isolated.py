import numpy as np, time, torch
from numba import njit
from ptssnn.snn import plif_kernels as k
R, K, N = 8000, 256, 672
rng = np.random.default_rng(0)
for (K, N, p) in ((256, 672, 0.033), (672, 256, 0.078), (256, 256, 0.028)):
    s = (rng.random((R, K)) < p).astype(np.float32)
    g = rng.standard_normal((R, N)).astype(np.float32)
    indptr = np.empty(R + 1, np.int64); idx = np.empty(R * K, np.int32)
    cnt, binary = k.spike_index_kernel(s.view(np.uint32), np.uint32(0x3F800000), indptr, idx)
    idx = idx[:cnt]
    colptr = np.empty(K + 1, np.int64); rows_of = np.empty_like(idx)
    @njit(cache=False, error_model="numpy")
    def csr_wgrad(indptr, indices, g, out):
        for kk in range(out.shape[0]):
            for n in range(out.shape[1]): out[kk, n] = 0.0
        n_out = g.shape[1]
        for r in range(indptr.shape[0] - 1):
            gr = g[r]
            for i in range(indptr[r], indptr[r + 1]):
                row = out[indices[i]]
                for n in range(n_out): row[n] += gr[n]
    out1 = np.empty((K, N), np.float32); out2 = np.empty((K, N), np.float32)
    def a():
        k.spike_columns_kernel(indptr, idx, K, colptr, rows_of)
        k.sparse_weight_grad_kernel(colptr, rows_of, True, out1, g, out1)
    def b(): csr_wgrad(indptr, idx, g, out2)
    a(); b()
    print(np.abs(out1 - out2).max())
    for f in (a, b):
        ts = []
        for _ in range(7):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        print(K, N, p, f.__name__, "%.2f ms" % (min(ts) * 1e3))

print("---- blocked")
@njit(cache=False, error_model="numpy")
def blocked(colptr, rows_of, grad_out, grad_weight_t, block_rows):
    n_out = grad_out.shape[1]
    width = grad_weight_t.shape[0]
    rows = grad_out.shape[0]
    cursor = colptr[:-1].copy()
    for k in range(width):
        row = grad_weight_t[k]
        for n in range(n_out): row[n] = 0.0
    for r1 in range(block_rows, rows + block_rows, block_rows):
        for k in range(width):
            start = cursor[k]
            end = start
            stop = colptr[k + 1]
            while end < stop and rows_of[end] < r1:
                end += 1
            if end > start:
                k_add_rows(grad_weight_t[k], grad_out, rows_of, start, end)
            cursor[k] = end
k_add_rows = k._add_rows
for (K, N, p) in ((256, 672, 0.033), (672, 256, 0.078), (256, 256, 0.028)):
    s = (rng.random((R, K)) < p).astype(np.float32)
    g = rng.standard_normal((R, N)).astype(np.float32)
    indptr = np.empty(R + 1, np.int64); idx = np.empty(R * K, np.int32)
    cnt, binary = k.spike_index_kernel(s.view(np.uint32), np.uint32(0x3F800000), indptr, idx)
    idx = idx[:cnt]
    colptr = np.empty(K + 1, np.int64); rows_of = np.empty_like(idx)
    out1 = np.empty((K, N), np.float32); out2 = np.empty((K, N), np.float32)
    def a():
        k.spike_columns_kernel(indptr, idx, K, colptr, rows_of)
        k.sparse_weight_grad_kernel(colptr, rows_of, True, out1, g, out1)
    for kb in (128, 256, 512):
        br = max(16, kb * 1024 // (N * 4))
        def c():
            k.spike_columns_kernel(indptr, idx, K, colptr, rows_of)
            blocked(colptr, rows_of, g, out2, br)
        a(); c(); 
        res = {}
        for f in (a, c) * 7:
            t = time.perf_counter(); f(); res[f.__name__] = min(res.get(f.__name__, 9), time.perf_counter() - t)
        print(K, N, p, kb, "KB", {n: "%.2f" % (v * 1e3) for n, v in res.items()}, np.abs(out1 - out2).max())
