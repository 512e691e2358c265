"""Issue 15, ninth session: each change to the compiled training step switched off alone,
against all of them on and the fused step, interleaved in one process (B=32, T=250,
D_in=512, the step of benchmarks/bench_plif.py, bfloat16 autocast unless named).

Command (repository root): taskset -c 1 .venv/bin/python \
    benchmarks/results/step-ab-ninth-session/ab.py > benchmarks/results/step-ab-ninth-session/output.txt

Changes that can be switched off here (each "without X" runs the form it replaced):
  norm-plif     LayerNorm -> PLIF in one kernel pair (ptssnn.snn.norm_plif)
  shift         the temporal shift kernel (ptssnn.snn.shift.CompiledShift)
  pooled-mean   the pooled mean of spikes without the mask product
  saturation    the saturation writing bfloat16 under autocast
  shared-scan   one spike-position scan for the SSLA keys and values
Not switchable (the old kernels are gone): the weight gradient of spike-fed layers by row in
the epilogue pass, the branch-free position lanes (see the README for their measurements).
"""

import statistics
import sys
import time

import torch

sys.path.insert(0, "benchmarks")
torch.set_num_threads(1)

from ptssnn.processes import retain_freed_memory  # noqa: E402

retain_freed_memory()

import bench_plif  # noqa: E402

import ptssnn.models.ptssnn as model_module  # noqa: E402
import ptssnn.snn.input_compiled as input_compiled  # noqa: E402
import ptssnn.snn.norm_plif as norm_plif  # noqa: E402
import ptssnn.snn.shift as shift  # noqa: E402
import ptssnn.snn.spike_linear as spike_linear  # noqa: E402

REAL = {
    "norm-plif": (norm_plif, "norm_plif_available", norm_plif.norm_plif_available),
    "shift": (shift, "compiled_shift_available", shift.compiled_shift_available),
    "pooled-mean": (model_module, "_masked_mean", model_module._masked_mean),
    "saturation": (input_compiled.CompiledSaturation, "apply",
                   input_compiled.CompiledSaturation.apply),
    "shared-scan": (spike_linear.SpikeLinear, "apply", spike_linear.SpikeLinear.apply),
}
_sat, _linear = input_compiled.CompiledSaturation.apply, spike_linear.SpikeLinear.apply


OFF = {
    "norm-plif": lambda: False,
    "shift": lambda: False,
    "pooled-mean": lambda x, m, zero_padded=False: REAL["pooled-mean"][2](x, m, False),
    "saturation": lambda x, w, b, xi, eps, low=False: _sat(x, w, b, xi, eps, False),
    "shared-scan": lambda s, w, b, shared=None: _linear(s, w, b, None),
}


def configure(off: str | None) -> None:
    for name, (owner, attribute, real) in REAL.items():
        setattr(owner, attribute, OFF[name] if name == off else real)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    variants = {"fused": ("fused", None), "compiled+bf16 (all on)": ("compiled+bf16", None)}
    variants.update({f"compiled+bf16 without {name}": ("compiled+bf16", name) for name in REAL})
    variants["compiled fp32 (all on)"] = ("compiled", None)
    variants["compiled fp32 without norm-plif"] = ("compiled", "norm-plif")
    steps = {label: bench_plif.make_training_step(32, 250, 512, variant)
             for label, (variant, _) in variants.items()}

    def run(label: str) -> float:
        configure(variants[label][1])
        start = time.perf_counter()
        steps[label]()
        return time.perf_counter() - start

    for label in steps:
        run(label), run(label)
    times: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(repeats):
        for label in steps:
            times[label].append(run(label))
    configure(None)
    print(f"{repeats} interleaved repeats; seconds per step")
    base = min(times["compiled+bf16 (all on)"])
    fused = min(times["fused"])
    for label, values in times.items():
        low = min(values)
        print(f"{label:40s} min {low:.4f}  median {statistics.median(values):.4f}  "
              f"fused/this {fused / low:.3f}  this - all on (bf16) {1e3 * (low - base):+.1f} ms")


if __name__ == "__main__":
    main()
