import sys, time, torch
sys.path.insert(0, "benchmarks")
torch.set_num_threads(1)
from ptssnn.processes import retain_freed_memory
retain_freed_memory()
import bench_plif as b
import ptssnn.models.ptssnn as mp
from ptssnn.snn.norm import apply_norm
steps = {"fused": b.make_training_step(32, 250, 512, "fused"),
         "before": b.make_training_step(32, 250, 512, "compiled+bf16"),
         "after": b.make_training_step(32, 250, 512, "compiled+bf16")}
real = mp.PTSSNN._embed
def old(self, x, mask):
    if self.saturation is not None:
        x = self.saturation(x, compiled=mp.compiled_neuron(self.output_neuron))
    return apply_norm(self.projection_norm, self.projection(x), mask)
def run(name):
    mp.PTSSNN._embed = old if name == "before" else real
    t = time.perf_counter(); steps[name](); return time.perf_counter() - t
for n in steps: run(n); run(n)
res = {n: [] for n in steps}
for _ in range(int(sys.argv[1])):
    for n in steps: res[n].append(run(n))
for n, v in res.items(): print("%-8s min %.4f median %.4f" % (n, min(v), sorted(v)[len(v)//2]))
for n in ("before", "after"): print("fused/%s %.3f" % (n, min(res["fused"]) / min(res[n])))
