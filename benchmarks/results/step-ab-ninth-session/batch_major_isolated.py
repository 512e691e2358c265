import torch, time
torch.set_num_threads(1)
from ptssnn.processes import retain_freed_memory
retain_freed_memory()
from ptssnn.snn.plif import PLIF
from ptssnn.snn.norm_plif import layer_norm_plif
ln = torch.nn.LayerNorm(256); n = PLIF(backend="compiled"); n.autocast_spikes = True
x = torch.randn(250, 32, 256).requires_grad_()
mask = torch.ones(250, 32, dtype=torch.bool); mask[200:, 16:] = False
g_bm = torch.randn(32, 250, 256).to(torch.bfloat16)
res = {}
with torch.autocast("cpu", dtype=torch.bfloat16):
    for bm in (False, True) * 8:
        t0 = time.perf_counter(); s, v = layer_norm_plif(ln, n, x, mask, None, bm)
        kb = s.transpose(0, 1).contiguous(); t1 = time.perf_counter()
        kb.backward(g_bm); t2 = time.perf_counter(); x.grad = None
        f, b = res.get(bm, (9, 9)); res[bm] = (min(f, t1 - t0), min(b, t2 - t1))
print({k: "fwd %.2f bwd %.2f" % (a * 1e3, b * 1e3) for k, (a, b) in res.items()})
