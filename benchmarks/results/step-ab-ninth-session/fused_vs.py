"""Side by side in one process: the fused step and the compiled steps named on the command line
(e.g. `taskset -c 1 .venv/bin/python benchmarks/results/step-ab-ninth-session/fused_vs.py fused,compiled+bf16 20`):
min and median of interleaved steps, and fused / each."""
import sys, time, torch
sys.path.insert(0, "benchmarks")
torch.set_num_threads(1)
from ptssnn.processes import retain_freed_memory
retain_freed_memory()
import bench_plif as b
names = sys.argv[1].split(",")
steps = {n: b.make_training_step(32, 250, 512, n) for n in names}
def run(name):
    t = time.perf_counter(); steps[name](); return time.perf_counter() - t
for n in steps: run(n); run(n)
res = {n: [] for n in steps}
for _ in range(int(sys.argv[2])):
    for n in steps: res[n].append(run(n))
for n, v in res.items(): print("%-14s min %.4f median %.4f" % (n, min(v), sorted(v)[len(v)//2]))
for n in names[1:]: print("fused/%s min %.3f median %.3f" % (n, min(res["fused"]) / min(res[n]), sorted(res["fused"])[len(v)//2] / sorted(res[n])[len(v)//2]))
