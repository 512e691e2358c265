"""PLIF forward+backward on the CPU: fused vs plain loop vs SpikingJelly 2.0.0, plus a full
PTS-SNN training step. Writes a JSON under ``benchmarks/results/``.

Run from the repository root (the numbers in benchmarks/README.md came from this command)::

    taskset -c 1 .venv/bin/python benchmarks/bench_plif.py --threads 1

What is timed: one forward pass over ``[T, B, D]`` inputs plus the backward of
``spikes.sum() + v_final.sum()`` (gradients w.r.t. the input and ``w``), from a fresh
membrane state. The three implementations are timed interleaved in one process so that
they share the machine's background load; min and median over ``--repeats`` are reported
(the min is the least disturbed by other processes). Peak memory is measured in a child
process per implementation: the peak of its resident set during one step (sampled every
0.2 ms, large blocks returned to the OS on free) minus its resident set before the step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = ("fused", "loop", "spikingjelly")


def _spikingjelly_version() -> str | None:
    try:
        from importlib.metadata import version

        import spikingjelly.activation_based.neuron  # noqa: F401

        return version("spikingjelly")
    except Exception:  # not installed, or its import fails: skip it
        return None


def make_step(name: str, steps: int, batch: int, dim: int):
    """A closure running one forward+backward of implementation ``name``."""
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(steps, batch, dim, generator=g) * 1.5 + 0.5).requires_grad_()
    if name in ("fused", "loop"):
        from ptssnn.snn import PLIF

        neuron = PLIF(backend=name)

        def step() -> None:
            x.grad = None
            neuron.w.grad = None
            spikes, v = neuron(x, return_state=True)
            (spikes.sum() + v.sum()).backward()

        return step
    from spikingjelly.activation_based import functional, neuron, surrogate

    node = neuron.ParametricLIFNode(init_tau=2.0, decay_input=True, v_reset=0.0,
                                    surrogate_function=surrogate.Sigmoid(alpha=4.0),
                                    detach_reset=False, step_mode="m")

    def step() -> None:
        x.grad = None
        node.w.grad = None
        functional.reset_net(node)
        spikes = node(x)
        (spikes.sum() + node.v.sum()).backward()

    return step


def time_plif(steps: int, batch: int, dim: int, repeats: int, names: list[str]) -> dict:
    runs = {name: make_step(name, steps, batch, dim) for name in names}
    for run in runs.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: {"min_ms": 1e3 * min(t), "median_ms": 1e3 * statistics.median(t),
                   "repeats": len(t)} for name, t in times.items()}


_MEMORY_CHILD = """
import os, sys, threading, time, torch
torch.set_num_threads({threads})
sys.path.insert(0, {here!r})
from bench_plif import make_step
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
step = make_step({name!r}, {steps}, {batch}, {dim})
step()  # warm-up: lazy initialisation is not part of the step's footprint
base, peak, done = rss(), [0], [False]
def sample():
    while not done[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.0002)
sys.setswitchinterval(0.0001)
thread = threading.Thread(target=sample)
thread.start()
step()
done[0] = True
thread.join()
print((max(peak[0], rss()) - base) / 2**20)
"""


def peak_memory_child(name: str, steps: int, batch: int, dim: int, threads: int) -> float:
    """Peak extra resident memory (MiB) of one forward+backward, in a fresh process.

    The child returns every large block to the OS on free (fixed mmap threshold), so its
    resident set follows the live tensors; a sampling thread records the peak during the step
    (torch kernels release the GIL). Inputs and parameters are in the baseline.
    """
    code = _MEMORY_CHILD.format(threads=threads, here=str(Path(__file__).parent), name=name,
                                steps=steps, batch=batch, dim=dim)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "4096", "MALLOC_TRIM_THRESHOLD_": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def copy_bandwidth_gbs(megabytes: int = 512, repeats: int = 5) -> float:
    """Memory bandwidth of a large tensor copy (bytes read + bytes written per second)."""
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * src.numel() * 4 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_step(batch: int, frames: int, input_dim: int, repeats: int,
                  backend: str) -> dict:
    """One AdamW step of the default PTS-SNN on random features (forward+backward+update)."""
    from torch.nn import functional as F

    from ptssnn.models import create_model

    model = create_model("pts-snn", input_dim, 4, plif_backend=backend)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    g = torch.Generator().manual_seed(0)
    features = torch.randn(batch, frames, input_dim, generator=g)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[batch // 2:, frames * 3 // 4:] = False  # some padding, as in real batches
    labels = torch.arange(batch) % 4

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(features, mask), labels).backward()
        optimizer.step()

    step()
    times = [_timed(step) for _ in range(repeats)]
    return {"min_s": min(times), "median_s": statistics.median(times), "repeats": repeats,
            "batch": batch, "frames": frames, "input_dim": input_dim,
            "parameters": model.num_trainable_parameters()}


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "affinity": affinity,
            "load_average": os.getloadavg(), "python": platform.python_version(),
            "torch": torch.__version__, "spikingjelly": _spikingjelly_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-repeats", type=int, default=5)
    parser.add_argument("--skip-loop-training", action="store_true",
                        help="do not time the training step with the plain-loop PLIF")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "plif_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    names = ["fused", "loop"] + (["spikingjelly"] if _spikingjelly_version() else [])
    info = machine()
    print(f"machine: {info}", flush=True)
    timing = time_plif(args.steps, args.batch, args.dim, args.repeats, names)
    memory = {name: peak_memory_child(name, args.steps, args.batch, args.dim, args.threads)
              for name in names}
    bandwidth = copy_bandwidth_gbs()
    elements = args.steps * args.batch * args.dim
    # Least traffic of any implementation: forward reads X, writes spikes and the charge H
    # it must keep; backward reads dL/dS, H, spikes and X, writes dL/dX (float32).
    bound_bytes = 8 * elements * 4
    bound_ms = 1e3 * bound_bytes / (bandwidth * 1e9)
    plif = {}
    for name in names:
        plif[name] = {**timing[name], "peak_extra_rss_mib": memory[name]}
    ratios = {}
    if "spikingjelly" in plif:
        ratios["spikingjelly_over_fused_min"] = plif["spikingjelly"]["min_ms"] / \
            plif["fused"]["min_ms"]
        ratios["spikingjelly_over_fused_median"] = plif["spikingjelly"]["median_ms"] / \
            plif["fused"]["median_ms"]
    ratios["loop_over_fused_min"] = plif["loop"]["min_ms"] / plif["fused"]["min_ms"]
    ratios["fused_over_bandwidth_bound_min"] = plif["fused"]["min_ms"] / bound_ms
    print(json.dumps({"plif": plif, "ratios": ratios}, indent=2), flush=True)

    train = {"fused": training_step(32, 250, 512, args.train_repeats, "fused")}
    if not args.skip_loop_training:
        train["loop"] = training_step(32, 250, 512, max(2, args.train_repeats // 2), "loop")
    result = {
        "command": "taskset -c 1 .venv/bin/python benchmarks/bench_plif.py --threads "
                   f"{args.threads}",
        "shape": {"T": args.steps, "B": args.batch, "D": args.dim},
        "threads": args.threads,
        "machine": {**info, "load_average_end": os.getloadavg()},
        "plif_forward_backward": plif,
        "ratios": ratios,
        "memory_bandwidth": {"copy_gb_per_s": bandwidth, "bound_bytes": bound_bytes,
                             "bound_ms": bound_ms},
        "training_step_pts_snn": train,
        "peak_rss_mib_this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
