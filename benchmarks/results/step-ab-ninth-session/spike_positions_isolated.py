import numpy as np, torch, time
from numba import njit
torch.set_num_threads(1)
from ptssnn.snn import plif_compiled
k = plif_compiled._kernels()

@njit(inline="always", error_model="numpy")
def lane(value, one, column, indices, count):
    indices[count] = column
    nz = value != 0
    return count + nz, nz and value != one

@njit(error_model="numpy")
def words4(words, one, indptr, indices):
    rows, count_words = words.shape
    count = 0
    not_one = 0
    low = np.uint64(0xFFFF)
    for r in range(rows):
        indptr[r] = count
        wr = words[r]
        for w in range(count_words):
            x = wr[w]
            if x != 0:
                base = 4 * w
                count, odd = lane(x & low, one, base, indices, count); not_one += odd
                count, odd = lane((x >> np.uint64(16)) & low, one, base + 1, indices, count); not_one += odd
                count, odd = lane((x >> np.uint64(32)) & low, one, base + 2, indices, count); not_one += odd
                count, odd = lane(x >> np.uint64(48), one, base + 3, indices, count); not_one += odd
    indptr[rows] = count
    return count, not_one == 0

for K, p in ((256, 0.035), (672, 0.036), (256, 0.076), (256, 0.028)):
    s = (torch.rand(8000, K) < p).to(torch.bfloat16)
    bits = s.view(torch.int16).numpy().view(np.uint16).view(np.uint64)
    ip1 = np.empty(8001, np.int64); ix1 = np.empty(8000 * K, np.int32)
    ip2 = np.empty(8001, np.int64); ix2 = np.empty(8000 * K + 4, np.int32)
    f_old = lambda: k.spike_index_words_kernel(bits, 4, np.uint64(0x3F80), ip1, ix1)
    f_new = lambda: words4(bits, np.uint64(0x3F80), ip2, ix2)
    c1 = f_old(); c2 = f_new()
    assert c1 == c2 and (ip1 == ip2).all() and (ix1[:c1[0]] == ix2[:c2[0]]).all()
    res = {}
    for name, f in (("old", f_old), ("new", f_new)) * 10:
        t = time.perf_counter(); f(); res[name] = min(res.get(name, 9), time.perf_counter() - t)
    print(K, p, {n: "%.2f" % (v * 1e3) for n, v in res.items()})
