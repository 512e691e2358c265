import torch, time
torch.set_num_threads(1)
from ptssnn.snn.shift import TemporalShift
sh = TemporalShift()
x = (torch.rand(250, 32, 256) < 0.05).to(torch.bfloat16).requires_grad_()
mask = torch.ones(250, 32, dtype=torch.bool); mask[200:, 16:] = False
g = torch.randn(250, 32, 256).to(torch.bfloat16)
for compiled in (False, True) * 2:
    f = b = 9
    for _ in range(10):
        t0 = time.perf_counter(); y = sh(x, mask, zero_padded=True, compiled=compiled); t1 = time.perf_counter()
        y.backward(g); t2 = time.perf_counter(); x.grad = None
        f, b = min(f, t1 - t0), min(b, t2 - t1)
    print(compiled, "fwd %.2f bwd %.2f ms" % (f * 1e3, b * 1e3))
