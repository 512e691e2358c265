import torch, time
torch.set_num_threads(1)
for N, K in ((672, 256), (256, 672), (256, 256)):
    a = torch.randn(8000, N).bfloat16(); w = torch.randn(N, K).bfloat16()
    rows = torch.arange(7000)
    def full(): return a.mm(w)
    def packed():
        out = a.new_zeros(8000, K); out.index_copy_(0, rows, a[:7000].mm(w)); return out
    def packed_only(): return a[:7000].mm(w)
    res = {}
    for f in (full, packed, packed_only) * 8:
        t = time.perf_counter(); f(); res[f.__name__] = min(res.get(f.__name__, 9), time.perf_counter() - t)
    print(N, K, {k: "%.2f" % (v * 1e3) for k, v in res.items()})
