import sys, time, torch
sys.path.insert(0, "benchmarks")
torch.set_num_threads(1)
from ptssnn.processes import retain_freed_memory
retain_freed_memory()
import bench_plif as b
import ptssnn.snn.spike_linear as sl
step = b.make_training_step(32, 250, 512, "compiled+bf16")
log = []
F, B = sl.SpikeLinear.forward, sl.SpikeLinear.backward
def fwd(ctx, s, w, bias, shared=None):
    t = time.perf_counter(); out = F(ctx, s, w, bias, shared); dt = time.perf_counter() - t
    log.append(("fwd", tuple(w.shape), float((s != 0).float().mean()), dt * 1e3)); return out
def bwd(ctx, g):
    t = time.perf_counter(); out = B(ctx, g); dt = time.perf_counter() - t
    log.append(("bwd", tuple(ctx.saved_tensors[1].shape), 0.0, dt * 1e3)); return out
sl.SpikeLinear.forward = staticmethod(fwd); sl.SpikeLinear.backward = staticmethod(bwd)
for _ in range(4):
    log.clear(); step()
for e in log: print("%s %-12s density %.3f %.2f ms" % e)
