"""A/B of the eighth session's training-step changes, each against the form it replaced,
interleaved in one process (compiled backend, bf16, freed memory retained, one thread).

    taskset -c 1 .venv/bin/python benchmarks/results/step-ab-eighth-session/ab.py

- ``input kernels``: ``ptssnn.snn.input_compiled`` (standardisation + layer sum, saturation
  LayerNorm + tanh) against the PyTorch input path, on the synthetic step of
  ``bench_plif.py`` and the training loop's step at 6.25 Hz and 50 Hz;
- ``sparse key/value``: the SSLA key/value layers through the sparse spike kernels against
  plain ``nn.Linear`` calls, on the synthetic step;
- ``attention``: ``context_sum`` against the per-head ``einsum`` form it replaced (kept
  here), forward + backward alone on the step's shape, under bf16 autocast.
"""

import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
torch.set_num_threads(1)

from bench_plif import _interleaved, make_fit_step, make_training_step  # noqa: E402

import ptssnn.models.ptssnn as model_module  # noqa: E402
import ptssnn.snn.attention as attention_module  # noqa: E402
from ptssnn.processes import retain_freed_memory  # noqa: E402
from ptssnn.snn.attention import context_sum, head_queries  # noqa: E402

retain_freed_memory()
switch = {"on": True}
layer_sum, saturation = model_module.standardised_layer_sum, model_module.soft_saturation
model_module.standardised_layer_sum = (
    lambda *a, **k: layer_sum(*a, **k) if switch["on"] else None)
model_module.soft_saturation = lambda x, n, xi, c: saturation(x, n, xi, c and switch["on"])
spike_linear = attention_module.spike_linear


def ab(label: str, step, what: tuple[str, str], repeats: int = 7) -> None:
    def on() -> None:
        switch["on"] = True
        step()

    def off() -> None:
        switch["on"] = False
        step()

    on(), off()
    times = _interleaved({what[0]: on, what[1]: off}, repeats)
    print(label, {name: round(min(wall), 4) for name, (wall, _) in times.items()}, flush=True)


ab("input kernels, synthetic step (s)", make_training_step(32, 250, 512, "compiled+bf16"),
   ("input kernels", "pytorch input"))
ab("input kernels, loop step 6.25 Hz (s)", make_fit_step("compiled+bf16", 50),
   ("input kernels", "pytorch input"))
ab("input kernels, loop step 50 Hz (s)", make_fit_step("compiled+bf16", 400),
   ("input kernels", "pytorch input"), repeats=4)

model_module.standardised_layer_sum, model_module.soft_saturation = layer_sum, saturation
attention_module.spike_linear = lambda layer, x, sparse: spike_linear(
    layer, x, sparse and switch["on"])
ab("sparse key/value, synthetic step (s)", make_training_step(32, 250, 512, "compiled+bf16"),
   ("sparse key/value", "dense key/value"))
attention_module.spike_linear = spike_linear


def per_head(k, v, q, heads, mask):
    """The seventh session's form: per-head einsums (copies in the backward)."""
    steps, batch, dim = k.shape
    d = dim // heads
    kh, vh = k.reshape(steps, batch, heads, d), v.reshape(steps, batch, heads, d)
    scores = torch.einsum("tbhd,mhd->tbmh", kh, q.reshape(-1, heads, d)) / d
    scores = scores * mask.to(scores.dtype)[:, :, None, None]
    return torch.einsum("tbmh,tbhd->bmhd", scores, vh).reshape(batch, -1, dim)


g = torch.Generator().manual_seed(0)
T, B, D, H, M = 250, 32, 256, 8, 4
k = (torch.rand(T, B, D, generator=g) < 0.05).to(torch.bfloat16).requires_grad_()
v = (torch.rand(T, B, D, generator=g) < 0.05).to(torch.bfloat16).requires_grad_()
q = (torch.rand(M, D, generator=g) < 0.5).float().requires_grad_()
mask = torch.ones(T, B, dtype=torch.bool)
mask[187:, 16:] = False
weight = torch.randn(B, M, D, generator=g)
forms = {"context_sum": lambda: context_sum(k, v, head_queries(q, H), H, mask),
         "per-head einsum": lambda: per_head(k, v, q, H, mask)}
best = {}
with torch.autocast("cpu", dtype=torch.bfloat16):
    for _ in range(10):
        for name, form in forms.items():
            start = time.perf_counter()
            (form().float() * weight).sum().backward()
            best[name] = min(best.get(name, 1e9), time.perf_counter() - start)
print("attention forward + backward (ms)", {n: round(1e3 * t, 2) for n, t in best.items()})
