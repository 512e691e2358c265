"""PLIF forward+backward on the CPU: compiled vs fused vs plain loop vs SpikingJelly 2.0.0,
plus a full PTS-SNN training step (compiled vs fused PLIF) and its profile, and steps of the
training loop (data + model) at 6.25 Hz and 50 Hz. Writes a JSON under ``benchmarks/results/``.

Run from the repository root (the numbers in benchmarks/README.md came from this command)::

    taskset -c 1 .venv/bin/python benchmarks/bench_plif.py --threads 1

What is timed: one forward pass over ``[T, B, D]`` inputs plus the backward of
``spikes.sum() + v_final.sum()`` (gradients w.r.t. the input and ``w``), from a fresh
membrane state. The implementations are timed interleaved in one process so that they share
the machine's background load; min and median over ``--repeats`` are reported (the min is
the least disturbed by other processes), as wall-clock time and as the CPU time of the
calling thread (``time.thread_time``: time spent waiting for a core that another process
holds is not counted, so on a shared machine it is the steadier figure). Peak memory is
measured in a child process per implementation: the peak of its resident set during one step
(sampled every 0.2 ms, large blocks returned to the OS on free) minus its resident set before
the step. The training steps (fused and compiled PLIF in float32, and compiled with
``TrainConfig.precision = "bf16"``) are interleaved the same way; one more step of each runs
under ``torch.profiler`` for the per-operator breakdown.
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
IMPLEMENTATIONS = ("compiled", "fused", "loop", "spikingjelly")
#: Training-step variants: PLIF backend [+ TrainConfig.precision].
FIT_VARIANTS = ("compiled", "fused", "compiled+bf16")


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


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
    if name in ("compiled", "fused", "loop"):
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


def _interleaved(runs: dict, repeats: int) -> dict[str, tuple[list[float], list[float]]]:
    """Run each closure ``repeats`` times, in turn; ``{name: (wall seconds, CPU seconds)}``."""
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            cpu, start = time.thread_time(), time.perf_counter()
            run()
            times[name][0].append(time.perf_counter() - start)
            times[name][1].append(time.thread_time() - cpu)
    return times


def time_plif(steps: int, batch: int, dim: int, repeats: int, names: list[str]) -> dict:
    runs = {name: make_step(name, steps, batch, dim) for name in names}
    for run in runs.values():  # warm-up
        run()
    times = _interleaved(runs, repeats)
    return {name: {"min_ms": 1e3 * min(wall), "median_ms": 1e3 * statistics.median(wall),
                   "cpu_min_ms": 1e3 * min(cpu), "cpu_median_ms": 1e3 * statistics.median(cpu),
                   "repeats": len(wall)} for name, (wall, cpu) in times.items()}


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


def copy_bandwidth_gbs(megabytes: int = 512, repeats: int = 5) -> tuple[float, float]:
    """Memory bandwidth of a large tensor copy (bytes read + written per second), by the
    fastest wall-clock time and by the least CPU time of the thread."""
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    wall, cpu = _interleaved({"copy": lambda: dst.copy_(src)}, repeats)["copy"]
    return 2 * src.numel() * 4 / min(wall) / 1e9, 2 * src.numel() * 4 / min(cpu) / 1e9


def _variant(name: str) -> tuple[str, str]:
    """``"compiled+bf16"`` → PLIF backend ``compiled``, ``TrainConfig.precision`` ``bf16``."""
    backend, _, precision = name.partition("+")
    return backend, precision or "fp32"


def make_training_step(batch: int, frames: int, input_dim: int, variant: str):
    """One AdamW step of the default PTS-SNN on random features (forward+backward+update),
    as the trainer runs it: the forward under ``training_autocast`` of the variant's
    precision, the loss in float32."""
    from torch.nn import functional as F

    from ptssnn.models import create_model
    from ptssnn.training.trainer import training_autocast

    backend, precision = _variant(variant)
    model = create_model("pts-snn", input_dim, 4, plif_backend=backend)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    g = torch.Generator().manual_seed(0)
    features = torch.randn(batch, frames, input_dim, generator=g)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[batch // 2:, frames * 3 // 4:] = False  # some padding, as in real batches
    labels = torch.arange(batch) % 4

    def step() -> None:
        optimizer.zero_grad()
        with training_autocast(features.device, precision):
            logits = model(features, mask)
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()

    step.parameters = model.num_trainable_parameters()  # type: ignore[attr-defined]
    return step


# Operator groups of the training-step profile. PLIF counts its autograd functions with the
# PyTorch ops they launch (the fused backend is made of such ops); the other groups count
# operators' own (self) time, so BLAS products called inside the sparse Linear's backward
# (its dense input gradient) count as matmul.
_INCLUSIVE = {
    "PLIF": ("CompiledPLIF", "CompiledPLIFBackward", "FusedPLIF", "FusedPLIFBackward"),
    "LayerNorm + PLIF kernels (block MLP hidden layer, SSLA keys and values)": (
        "CompiledNormPLIF", "CompiledNormPLIFBackward"),
    "input kernels (standardise + layer sum, saturation LayerNorm + tanh)": (
        "CompiledLayerSum", "CompiledLayerSumBackward", "CompiledSaturation",
        "CompiledSaturationBackward"),
    "temporal shift kernel": ("CompiledShift", "CompiledShiftBackward"),
}
_GROUPS = {
    "matmul (Linear, SSLA products)": ("aten::mm", "aten::addmm", "aten::bmm"),
    "sparse spike Linear kernels (block MLP, SSLA key/value)": ("SpikeLinear",
                                                                "SpikeLinearBackward"),
    "LayerNorm (PyTorch)": ("aten::native_layer_norm", "aten::native_layer_norm_backward"),
    "tanh (saturation, PyTorch)": ("aten::tanh", "aten::tanh_backward"),
    "copies and dtype casts": ("aten::copy_",),
}


def profile_training_step(step, repeats: int = 3) -> dict:
    """Time per operator group (ms) and the top operators (self time) of one step: each
    figure is its minimum over ``repeats`` profiled steps (the profiler reads wall-clock
    time, so on a shared machine the minimum is the least disturbed)."""
    from torch.profiler import ProfilerActivity, profile

    own: dict[str, float] = {}
    inclusive: dict[str, float] = {}
    totals = []
    for _ in range(repeats):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        events = prof.key_averages()
        totals.append(sum(e.self_cpu_time_total for e in events) / 1e3)
        for e in events:
            for table, ms in ((own, e.self_cpu_time_total / 1e3),
                              (inclusive, e.cpu_time_total / 1e3)):
                table[e.key] = min(table.get(e.key, ms), ms)
    total = min(totals)
    groups = {name: sum(inclusive.get(op, 0.0) for op in members)
              for name, members in _INCLUSIVE.items()}
    groups.update({name: sum(own.get(op, 0.0) for op in members)
                   for name, members in _GROUPS.items()})
    groups["everything else"] = total - sum(groups.values())
    top = sorted(own.items(), key=lambda item: -item[1])[:15]
    return {"total_ms": total, "groups_ms": groups, "top_ops_ms": dict(top)}


def training_steps(batch: int, frames: int, input_dim: int, repeats: int,
                   backends: list[str]) -> dict:
    """Interleaved training steps of each backend, then one profiled step of each."""
    steps = {name: make_training_step(batch, frames, input_dim, name) for name in backends}
    for step in steps.values():  # warm-up
        step()
    result = {}
    for name, (wall, cpu) in _interleaved(steps, repeats).items():
        result[name] = {"min_s": min(wall), "median_s": statistics.median(wall),
                        "cpu_min_s": min(cpu), "cpu_median_s": statistics.median(cpu),
                        "repeats": repeats, "batch": batch, "frames": frames,
                        "input_dim": input_dim, "parameters": steps[name].parameters,
                        "profile": profile_training_step(steps[name])}
    return result


def make_fit_step(variant: str, crop: int, seed: int = 0):
    """One step of the benchmark's training loop on synthetic whisper-base-shaped features,
    as ``fit`` runs it: ``LabelledFeatures.batch`` (random crop of ``crop`` frames) +
    ``augment`` (time and feature masks, mixup, in the standardised space) +
    forward/backward/AdamW of the default PTS-SNN reading all 7 hidden states (B = 16, as
    ``TrainConfig``), the forward under the variant's precision."""
    from torch.nn import functional as F

    from ptssnn.features.table import LabelledFeatures
    from ptssnn.models import create_model
    from ptssnn.training.augment import augment, training_augmentation
    from ptssnn.training.config import TrainConfig
    from ptssnn.training.trainer import training_autocast

    backend, precision = _variant(variant)
    layers, dim, batch = 7, 512, 16
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(150, 600, (48,), generator=g).tolist()  # 3–12 s at 50 Hz
    items = [(str(i), torch.randn(layers, n, dim, generator=g).half().numpy(), "a")
             for i, n in enumerate(lengths)]
    data = LabelledFeatures.from_arrays(items, ["a", "b", "c", "d"])
    model = create_model("pts-snn", dim, 4, input_layers=layers, plif_backend=backend)
    model.set_input_statistics(*data.moments())
    config = TrainConfig(max_train_frames=crop, time_mask_width=max(2, crop // 25),
                         precision=precision)
    augmentation, moments = training_augmentation(model, data, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = torch.Generator().manual_seed(seed + 1)

    def step() -> None:
        indices = torch.randint(0, len(data), (batch,), generator=rng).tolist()
        b = augment(data.batch(indices, crop_frames=crop, generator=rng), *moments,
                    augmentation, rng)
        optimizer.zero_grad(set_to_none=True)
        with training_autocast(b.features.device, precision):
            logits = model(b.features, b.mask)
        F.cross_entropy(logits.float(), b.labels % 4).backward()
        optimizer.step()

    return step


def fit_steps(repeats: int) -> dict:
    """Training-loop steps at 6.25 Hz (50-frame crops) and 50 Hz (400-frame crops, the same
    8 s), each of ``FIT_VARIANTS``, interleaved."""
    result = {}
    for rate, crop in (("6.25Hz", 50), ("50Hz", 400)):
        steps = {name: make_fit_step(name, crop) for name in FIT_VARIANTS}
        for step in steps.values():  # warm-up
            step()
        times = _interleaved(steps, repeats)
        result[rate] = {name: {"min_s": min(wall), "median_s": statistics.median(wall),
                               "cpu_min_s": min(cpu), "crop_frames": crop, "batch": 16,
                               "hidden_states": 7, "repeats": repeats}
                        for name, (wall, cpu) in times.items()}
    return result


def _fit_child(variant: str, crop: int, retain: bool, repeats: int) -> None:
    """Child process of :func:`fit_steps_memory`: one allocator setting per process."""
    if retain:
        from ptssnn.processes import retain_freed_memory

        assert retain_freed_memory()
    step = make_fit_step(variant, crop)
    step()
    step()
    times = []
    for _ in range(repeats):
        before = os.times()
        step()
        after = os.times()
        times.append((after.user - before.user, after.system - before.system))
    best = min(times, key=sum)
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's over the exec).
    status = Path("/proc/self/status").read_text().splitlines()
    peak = next((int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM")),
                None)
    print(json.dumps({"cpu_min_s": sum(best), "user_s": best[0], "system_s": best[1],
                      "peak_rss_mib": peak}))


def fit_steps_memory(repeats: int) -> dict:
    """The 50 Hz training-loop step (400-frame crops, 7 hidden states) with glibc's default
    allocator settings and with :func:`ptssnn.processes.retain_freed_memory` (what the
    training processes call), each in its own process; CPU time = user + system."""
    result: dict = {}
    for variant in FIT_VARIANTS:
        for retain in (False, True):
            out = subprocess.run(
                [sys.executable, __file__, "--fit-child", variant, "400", str(int(retain)),
                 str(repeats)], capture_output=True, text=True, check=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"})
            key = f"{variant}{' retained' if retain else ''}"
            result[key] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _allocator_ratios(memory: dict) -> dict:
    ratios = {}
    for variant in ("compiled", "compiled+bf16"):
        tag = variant.replace("+", "_")
        ratios[f"fit_step_50Hz_{tag}_default_over_retained_cpu_min"] = \
            memory[variant]["cpu_min_s"] / memory[f"{variant} retained"]["cpu_min_s"]
        # The training loop as it ran before issue 15 (fused PLIF, fp32, default allocator)
        # against each variant with the training processes' allocator setting.
        ratios[f"fit_step_50Hz_fused_default_over_{tag}_retained_cpu_min"] = \
            memory["fused"]["cpu_min_s"] / memory[f"{variant} retained"]["cpu_min_s"]
    return ratios


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
            "torch": torch.__version__, "spikingjelly": _spikingjelly_version(),
            "numba": _version("numba")}


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--fit-child":
        torch.set_num_threads(1)
        _fit_child(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]))
        return
    if len(sys.argv) >= 3 and sys.argv[1] == "--allocator-only":
        # Redo only the allocator comparison in an existing result file (it is the one part
        # measured in child processes).
        path = Path(sys.argv[2])
        result = json.loads(path.read_text())
        result["fit_step_50Hz_allocator"] = memory = fit_steps_memory(5)
        result["ratios"].update(_allocator_ratios(memory))
        result["allocator_command"] = "taskset -c 1 .venv/bin/python " + " ".join(
            [str(Path(sys.argv[0]).relative_to(ROOT)) if Path(sys.argv[0]).is_absolute()
             else sys.argv[0], *sys.argv[1:]])
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(memory, indent=2))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-repeats", type=int, default=5)
    parser.add_argument("--loop-training", action="store_true",
                        help="also time the training step with the plain-loop PLIF (slow)")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "plif_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from ptssnn.snn import plif_compiled

    if not plif_compiled.available():
        parser.exit(1, f"compiled PLIF unavailable: {plif_compiled.unavailable_reason()}\n")
    names = ["compiled", "fused", "loop"] + (["spikingjelly"] if _spikingjelly_version() else [])
    info = machine()
    print(f"machine: {info}", flush=True)
    timing = time_plif(args.steps, args.batch, args.dim, args.repeats, names)
    memory = {name: peak_memory_child(name, args.steps, args.batch, args.dim, args.threads)
              for name in names}
    bandwidth, bandwidth_cpu = copy_bandwidth_gbs()
    elements = args.steps * args.batch * args.dim
    # Least traffic of any implementation: forward reads X, writes spikes and the charge H
    # it must keep; backward reads dL/dS, H, spikes and X, writes dL/dX (float32).
    bound_bytes = 8 * elements * 4
    bound_ms = 1e3 * bound_bytes / (bandwidth * 1e9)
    bound_cpu_ms = 1e3 * bound_bytes / (bandwidth_cpu * 1e9)
    plif = {}
    for name in names:
        plif[name] = {**timing[name], "peak_extra_rss_mib": memory[name]}
    ratios = {}
    for other in names[1:]:  # how many times faster the compiled backend is
        for stat in ("min_ms", "median_ms", "cpu_min_ms"):
            ratios[f"{other}_over_compiled_{stat[:-3]}"] = plif[other][stat] / \
                plif["compiled"][stat]
    for name in ("compiled", "fused"):
        ratios[f"{name}_over_bandwidth_bound_min"] = plif[name]["min_ms"] / bound_ms
        ratios[f"{name}_over_bandwidth_bound_cpu_min"] = plif[name]["cpu_min_ms"] / \
            bound_cpu_ms
    print(json.dumps({"plif": plif, "ratios": ratios}, indent=2), flush=True)

    variants = [*FIT_VARIANTS] + (["loop"] if args.loop_training else [])
    # From here on this process keeps freed memory, as every training process does
    # (ptssnn.processes.retain_freed_memory): otherwise each step page-faults its large
    # activations in again, which adds ±10 % of noise between runs to every variant.
    from ptssnn.processes import retain_freed_memory

    retained = retain_freed_memory()
    train = training_steps(32, 250, 512, args.train_repeats, variants)
    for fast in ("compiled", "compiled+bf16"):
        tag = fast.replace("+", "_")
        for stat in ("min_s", "median_s", "cpu_min_s"):
            ratios[f"training_fused_over_{tag}_{stat[:-2]}"] = train["fused"][stat] / \
                train[fast][stat]
    fit = fit_steps(args.train_repeats)
    for rate, steps in fit.items():
        for fast in ("compiled", "compiled+bf16"):
            tag = fast.replace("+", "_")
            for stat in ("min_s", "cpu_min_s"):
                ratios[f"fit_step_{rate}_fused_over_{tag}_{stat[:-2]}"] = \
                    steps["fused"][stat] / steps[fast][stat]
    memory = fit_steps_memory(args.train_repeats)
    ratios.update(_allocator_ratios(memory))
    result = {
        "command": "taskset -c 1 .venv/bin/python " + " ".join(
            [str(Path(sys.argv[0]).relative_to(ROOT)) if Path(sys.argv[0]).is_absolute()
             else sys.argv[0], *sys.argv[1:]]),
        "shape": {"T": args.steps, "B": args.batch, "D": args.dim},
        "threads": args.threads,
        "machine": {**info, "load_average_end": os.getloadavg()},
        "plif_forward_backward": plif,
        "ratios": ratios,
        "memory_bandwidth": {"copy_gb_per_s": bandwidth, "copy_gb_per_s_cpu": bandwidth_cpu,
                             "bound_bytes": bound_bytes, "bound_ms": bound_ms,
                             "bound_cpu_ms": bound_cpu_ms},
        "training_allocator_retains_freed_memory": retained,
        "training_step_pts_snn": train,
        "fit_step_pts_snn": fit,
        "fit_step_50Hz_allocator": memory,
        "peak_rss_mib_this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
