import torch, time
torch.set_num_threads(1)
from ptssnn.processes import retain_freed_memory
retain_freed_memory()
from ptssnn.snn.plif import PLIF
from ptssnn.snn.norm_plif import layer_norm_plif
import ptssnn.snn.norm_plif as npl
real = npl.norm_plif_available
for K in (256, 672):
    ln = torch.nn.LayerNorm(K); n = PLIF(backend="compiled")
    x = (torch.randn(250, 32, K)).requires_grad_()
    mask = torch.ones(250, 32, dtype=torch.bool); mask[200:, 16:] = False
    g = torch.randn(250, 32, K)
    res = {}
    for name in ("two", "fused") * 8:
        npl.norm_plif_available = real if name == "fused" else (lambda: False)
        t0 = time.perf_counter(); s, v = layer_norm_plif(ln, n, x, mask); t1 = time.perf_counter()
        (s * g).sum().backward(); t2 = time.perf_counter()
        x.grad = None
        f, b = res.get(name, (9, 9)); res[name] = (min(f, t1 - t0), min(b, t2 - t1))
    print(K, {k: "fwd %.2f bwd %.2f ms" % (a * 1e3, c * 1e3) for k, (a, c) in res.items()})
