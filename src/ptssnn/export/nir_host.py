"""Reference host runner of a NIR export: rebuild the whole head from the export directory alone.

:func:`run_export` reads ``manifest.json``, the ``*.nir`` graphs and ``host.safetensors``
written by :func:`ptssnn.export.export_nir` and computes the logits of one utterance: NIR
segments run in :func:`simulate_nir` (a reference simulator of the NIR chains: ``Affine``,
``Linear``, ``LIF``), host operations run here with the stored tensors. No model object and no
checkpoint are used, so the export is complete by construction; the tests require these
logits to equal the model's within 1e-5 and every spike to be identical.

Everything runs in float32 PyTorch with a batch of one and evaluates the model's expressions
in the model's order (``Affine`` as ``F.linear``, the LIF charge as the PLIF charge, firing on
``H >= V_th``), which is why the spikes are identical and not merely close.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ptssnn.export.nir_format import HOST_PARAMETERS, MANIFEST
from ptssnn.export.onnx_export import ExportError
from ptssnn.snn.shift import TemporalShift

__all__ = ["NIRExport", "SegmentRunner", "compare_with_model", "run_export", "simulate_nir"]

#: ``(graph, x [T, n]) → (output [T, m], spikes by LIF node name)``: runs one NIR segment.
SegmentRunner = Callable[[Any, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]

_LN_EPS = 1e-5  # torch.nn.LayerNorm's default, which every LayerNorm of the head uses


def _lif(node: Any, current: torch.Tensor, dt: float, target: str) -> torch.Tensor:
    """Spikes ``[T, n]`` of a NIR LIF driven by ``current [T, n]`` (one Euler step per frame)."""
    threshold = torch.from_numpy(np.asarray(node.v_threshold, np.float32))
    reset = torch.from_numpy(np.asarray(node.v_reset, np.float32))
    tau = torch.from_numpy(np.asarray(node.tau, np.float32))
    if target == "sinabs":  # v ← exp(−1/τ)·v + I (τ in steps), the sinabs convention
        alpha = torch.exp(-1.0 / tau.double()).float()
    else:
        q = torch.tensor(dt, dtype=torch.float32) / tau
        leak = torch.from_numpy(np.asarray(node.v_leak, np.float32))
        r = torch.from_numpy(np.asarray(node.r, np.float32))
    v = reset.clone()
    spikes = torch.empty_like(current)
    for t in range(current.shape[0]):
        # sinabs: exp(−1/τ)·v + I; NIR: v + ((v_leak − v) + r·I)·dt/τ, written as the PLIF
        # charge (bit-identical to it).
        h = alpha * v + current[t] if target == "sinabs" else v + (r * current[t] - (v - leak)) * q
        fired = h >= threshold
        spikes[t] = fired.to(current.dtype)
        v = torch.where(fired, reset, h)
    return spikes


def simulate_nir(graph: Any, inputs: np.ndarray | torch.Tensor, dt: float, *,
                 target: str = "nir", record: dict[str, torch.Tensor] | None = None
                 ) -> torch.Tensor:
    """Run a chain graph (``input → … → output``) over a sequence ``[T, n]``.

    Args:
        graph: a ``nir.NIRGraph`` whose nodes form one chain (as :func:`export_nir` writes).
        inputs: the sequence fed to ``input``, ``[T, n]``.
        dt: seconds per step (``dt/τ`` is the leak per step; not used for ``sinabs``).
        target: the convention the LIF parameters are written in.
        record: if given, every LIF node's spikes are stored in it under the node name.

    Returns:
        The ``output`` sequence ``[T, m]`` (float32).

    Raises:
        ExportError: not a chain, or a node type the simulator does not run.
    """
    following = {}
    for source, dest in graph.edges:
        if source in following:
            raise ExportError(f"node {source!r} has several outgoing edges: not a chain")
        following[source] = dest
    x = torch.as_tensor(np.asarray(inputs, np.float32))
    name = following.get("input")
    while name is not None and name != "output":
        node = graph.nodes[name]
        kind = type(node).__name__
        if kind in ("Affine", "Linear"):
            weight = torch.from_numpy(np.asarray(node.weight, np.float32))
            bias = (torch.from_numpy(np.asarray(node.bias, np.float32)) if kind == "Affine"
                    else None)
            x = F.linear(x, weight, bias)
        elif kind == "LIF":
            x = _lif(node, x, dt, target)
            if record is not None:
                record[name] = x
        else:
            raise ExportError(f"the reference simulator cannot run NIR node type {kind}")
        name = following.get(name)
    if name != "output":
        raise ExportError("the graph's chain does not end at its 'output' node")
    return x


class NIRExport:
    """An export directory, loaded: manifest, graphs and host tensors.

    Args:
        directory: written by :func:`ptssnn.export.export_nir`.

    Raises:
        ExportError: not an export directory.
    """

    def __init__(self, directory: str | Path) -> None:
        import nir
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / MANIFEST).is_file():
            raise ExportError(f"{directory} is not a NIR export (no {MANIFEST})")
        self.manifest = json.loads((directory / MANIFEST).read_text())
        self.graphs = {name: nir.read(str(directory / file))
                       for name, file in self.manifest["segments"].items()}
        self.tensors = load_file(str(directory / HOST_PARAMETERS))
        self.dt = float(self.manifest["dt"])
        self.target = self.manifest["target"]

    def param(self, step: dict[str, Any], key: str) -> torch.Tensor:
        prefix = step.get("params", "")
        return self.tensors[f"{prefix}.{key}" if prefix else key]

    def simulate(self, graph: Any, x: torch.Tensor) -> tuple[torch.Tensor,
                                                             dict[str, torch.Tensor]]:
        """The default segment runner: :func:`simulate_nir` → ``(output, spikes by node)``."""
        spikes: dict[str, torch.Tensor] = {}
        return simulate_nir(graph, x, self.dt, target=self.target, record=spikes), spikes

    def run(self, features: torch.Tensor | np.ndarray,
            record: dict[str, torch.Tensor] | None = None,
            runner: SegmentRunner | None = None) -> torch.Tensor:
        """Logits ``[C]`` of one utterance, ``features [T, D_in]`` or ``[L, T, D_in]``.

        Args:
            features: the utterance's backbone features, all frames real.
            record: collects the spikes of every LIF node (under the model's module path).
            runner: runs one NIR segment, ``(graph, x [T, n]) → (output [T, m], spikes by
                node name)``; default :meth:`simulate`. Another simulator or a neuromorphic
                tool goes here (``benchmarks/nir_consumers.py``).
        """
        runner = runner or self.simulate
        x = torch.as_tensor(np.asarray(features, np.float32))
        seq: dict[str, torch.Tensor] = {"features": x if x.dim() == 3 else x[None]}
        with torch.inference_mode():
            for step in self.manifest["program"]:
                reads = [seq[name] for name in step["reads"]] if "op" in step else []
                if "run" in step:
                    graph = self.graphs[step["run"]]
                    out, spikes = runner(graph, seq[step["reads"]][:, 0])
                    out = torch.as_tensor(out, dtype=torch.float32)
                    if record is not None:
                        modules = graph.metadata.get("modules", {})
                        record.update({modules.get(k, k): v for k, v in spikes.items()})
                    seq[step["writes"]] = out[:, None]  # [T, 1, n]: the model's layout
                else:
                    seq[step["writes"]] = self._host(step, reads)
        return seq["logits"][0]

    def _host(self, step: dict[str, Any], reads: list[torch.Tensor]) -> torch.Tensor:
        """One host operation on ``[T, 1, n]`` sequences (features: ``[L, T, D]``)."""
        op, P = step["op"], (lambda key: self.param(step, key))
        if op == "standardise":
            return (reads[0] - P("input_mean")[:, None, :]) / P("input_std")[:, None, :]
        if op == "layer_sum":  # the model's einsum, on a batch of one
            weights = torch.softmax(P("layer_weights"), 0)
            return torch.einsum("bltd,l->btd", reads[0][None], weights)[0][:, None]
        if op == "flatten_layers":  # [L, T, D] → [T, 1, L·D] (layer-major)
            layers, steps, dim = reads[0].shape
            return reads[0].permute(1, 0, 2).reshape(steps, 1, layers * dim)
        if op == "soft_saturation":
            x = reads[0]
            if step.get("norm", True):  # exports made before saturation_norm have a norm
                x = F.layer_norm(x, x.shape[-1:], P("norm.weight"), P("norm.bias"), _LN_EPS)
            return torch.tanh(float(step["xi"]) * x)
        if op in ("layer_norm", "layer_norm_residual"):
            x = reads[0]
            out = F.layer_norm(x, x.shape[-1:], P("weight"), P("bias"), _LN_EPS)
            return reads[1] + out if op == "layer_norm_residual" else out
        if op == "temporal_shift":
            return TemporalShift(float(step["later"]), float(step["earlier"]))(reads[0])
        if op == "prompt_attention":
            return self._prompt_attention(step, reads[0], reads[1])
        if op == "select_bias":  # [n_targets, D] per utterance or [T, n_targets, D] per frame
            bias = reads[0][..., int(step["index"]), :]
            return bias.expand(reads[1].shape[0], 1, -1) if bias.dim() == 1 else bias[:, None]
        if op == "residual":
            return reads[1] + reads[0]
        if op == "concat":
            return torch.cat(reads, -1)
        if op == "mean_over_time":
            out = reads[0].mean(0)
            if len(reads) > 1:  # +ssla: the read-out context goes through the classifier
                out = out + reads[1] @ self.tensors["classifier.weight"].T
            return out
        raise ExportError(f"unknown host operation {op!r} in the manifest")

    def _prompt_attention(self, step: dict[str, Any], k: torch.Tensor,
                          v: torch.Tensor) -> torch.Tensor:
        """SSLA of the prompts over the key/value spikes ``[T, 1, D]`` → bias or read-out.

        The same expressions as :class:`ptssnn.snn.SpikingSparseLinearAttention` and
        :class:`ptssnn.snn.MembraneCalibration`, on a batch of one without padding.
        """
        P = lambda key: self.param(step, key)  # noqa: E731
        prompts, heads = P("prompts"), int(step["heads"])
        steps, batch, dim = k.shape
        d = dim // heads
        q = F.layer_norm(F.linear(prompts, P("attention.query.weight"),
                                  P("attention.query.bias")),
                         (dim,), P("attention.query_norm.weight"),
                         P("attention.query_norm.bias"), _LN_EPS)
        q = (q >= 0).to(q.dtype)  # the query threshold unit
        count = q.shape[0]
        kh, vh = k.reshape(steps, batch, heads, d), v.reshape(steps, batch, heads, d)
        scores = torch.einsum("tbhd,mhd->tbmh", kh, q.reshape(count, heads, d)) / d
        frames = torch.ones(steps, batch, dtype=k.dtype)
        if step.get("causal"):
            per_frame = (scores[..., None] * vh[:, :, None]).reshape(steps, batch, count, -1)
            context = per_frame.cumsum(0) / frames.cumsum(0).clamp(min=1.0)[:, :, None, None]
        else:
            total = torch.einsum("tbmh,tbhd->bmhd", scores, vh).reshape(batch, count, dim)
            context = total / frames.sum(0).clamp(min=1.0)[:, None, None]
        out = F.layer_norm(F.linear(context, P("attention.out.weight"), P("attention.out.bias")),
                           (dim,), P("attention.out_norm.weight"), P("attention.out_norm.bias"),
                           _LN_EPS)
        projected = F.linear(prompts + out, P("projection.weight"), P("projection.bias"))
        bias = torch.einsum("lm,...md->...ld", P("mixing"), projected)
        # bias: [1, n, D] → [n, D]; per frame [T, 1, n, D] → [T, n, D]; readout: [1, D]
        if step["output"] == "readout":
            return bias[:, 0]
        return bias[:, 0] if bias.dim() == 4 else bias[0]


def run_export(directory: str | Path, features: torch.Tensor | np.ndarray) -> np.ndarray:
    """Logits ``[C]`` of one utterance from an export directory alone (see :class:`NIRExport`)."""
    return NIRExport(directory).run(features).numpy()


def compare_with_model(directory: str | Path, model: torch.nn.Module,
                       features: torch.Tensor) -> dict[str, Any]:
    """Run the export and the model on one utterance: largest logit difference, spike match.

    Returns:
        ``{"max_abs_diff": float, "spikes_equal": bool, "spikes": int}`` (``spikes``: the
        export's spike count over its LIF layers).
    """
    from ptssnn.snn.plif import PLIF

    export = NIRExport(directory)
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module: Any, _inputs: Any, out: Any) -> None:
            spikes = out[0] if isinstance(out, tuple) else out
            seen[name] = spikes[:, 0].detach()
        return hook

    hooks = [module.register_forward_hook(keep(name))
             for name, module in model.named_modules() if isinstance(module, PLIF)]
    try:
        with torch.inference_mode():
            want = model(features[None]).float()[0]
    finally:
        for hook in hooks:
            hook.remove()
    spikes: dict[str, torch.Tensor] = {}
    got = export.run(features, record=spikes)
    # Layers the model runs but does not use (the output neurons under membrane pooling)
    # are not exported; every exported one must match.
    equal = bool(spikes) and set(spikes) <= set(seen) and all(
        torch.equal(spikes[k], seen[k]) for k in spikes)
    return {"max_abs_diff": float((got - want).abs().max()), "spikes_equal": bool(equal),
            "spikes": int(sum(float(s.sum()) for s in spikes.values()))}
