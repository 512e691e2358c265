"""NIR export: the spiking parts of a PTS-SNN head as a Neuromorphic Intermediate Representation.

**PLIF → NIR LIF.** NIR's LIF is continuous: ``τ·dv/dt = (v_leak − v) + R·I``, spike when
``v > v_threshold``, then ``v ← v_reset``. Our PLIF is discrete, one step per head frame
(``dt`` = 20 ms per backbone frame × the model's frame pooling, e.g. 80 ms when the trainer
averaged groups of 4 frames), ``q = 1/τ_steps = sigmoid(w)``. The forward-Euler step of
NIR's equation with step ``dt`` is ``v ← v + (dt/τ)·((v_leak − v) + R·I)``; it equals the
PLIF charge

* with ``decay_input`` (default): ``H = V + (X − (V − V_reset))·q`` when
  ``τ = τ_steps·dt`` (seconds), ``v_leak = V_reset``, ``R = 1`` and ``I = X``;
* without ``decay_input``: ``H = V − (V − V_reset)·q + X`` when additionally ``R = τ_steps``.

``v_threshold`` and ``v_reset`` carry over (hard reset). ``w`` is one scalar per layer in the
model; NIR wants one value per neuron, so every array is the scalar broadcast to the layer's
width. Differences that remain: NIR fires on ``v > v_threshold``, PLIF on ``H ≥ V_th`` (they
differ only when the membrane lands exactly on the threshold); a simulator that integrates
the ODE exactly instead of with Euler steps sees slightly different dynamics (the mapping is
exact for Euler at ``dt``, stored in the graph metadata as ``dt``). Soft reset
(``v_reset=None``) has no NIR LIF equivalent and is refused.

**What NIR cannot hold, and how it is handled.** The graph is cut at every operation that
has no NIR node; each cut is a pair of graph ``Output`` / ``Input`` nodes, and the graph
metadata (``host_ops``) lists, in execution order, the host-side operation that connects
them (with the name of the PyTorch module whose weights it uses, found in the model
directory's ``model.safetensors``):

* the per-channel input standardisation (``input_mean``/``input_std`` buffers of the model:
  an affine map, but applied before the layer sum, which NIR cannot express either);
* learned layer sum (``[L, T, D]`` → ``[T, D]``), soft saturation ``tanh(ξ·LayerNorm)`` and
  every ``LayerNorm`` (per-frame normalisation: not an affine map);
* the temporal shift (the one-step-*earlier* channels are anti-causal; the later ones would be
  a ``Delay``, but splitting the shift would only scatter it);
* the spiking sparse linear attention of the calibration (products of spike trains and an
  average over the utterance) and the prompt → bias projection;
* the calibration bias itself enters the graph as an extra input current of each block's
  input LIF layer (graph input ``block{i}.bias``, constant over the utterance): NIR sums the
  edges that enter a node, so ``I = X + b`` exactly as the PLIF's biased charge;
* the residual additions of LayerNorm outputs, and the masked mean over time. The classifier
  is linear, so it is exported as an ``Affine`` applied per frame: the mean over frames of
  the graph output ``logits`` equals the model's logits (plus ``W·readout`` for ``+ssla``).

There is no padding mask in NIR: run one utterance at a time, real frames only.
:func:`run_nir_head` executes an exported file together with the host operations and
reproduces the PyTorch logits; the tests use it as the round-trip check.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ptssnn.export.onnx_export import ExportError

#: Seconds per step: one PLIF step per backbone frame (50 frames/s).
FRAME_DT = 1.0 / 50.0


def plif_to_nir_lif(plif: nn.Module, size: int, *, dt: float = FRAME_DT) -> Any:
    """A NIR ``LIF`` node equivalent (under Euler steps of ``dt``) to a PLIF layer.

    Args:
        plif: A :class:`ptssnn.snn.PLIF` layer (hard reset).
        size: Number of neurons (the layer's width).
        dt: Seconds per step.

    Returns:
        ``nir.LIF`` with ``tau`` (s), ``r``, ``v_leak``, ``v_threshold``, ``v_reset`` arrays.

    Raises:
        ExportError: Not a PLIF layer, or soft reset.
    """
    import nir

    from ptssnn.snn.plif import PLIF

    if not isinstance(plif, PLIF):
        raise ExportError(
            f"NIR export needs spiking neurons; found {type(plif).__name__} (the 'ann' preset "
            "has no spiking equivalent: export it to ONNX instead)"
        )
    if plif.v_reset is None:
        raise ExportError(
            "NIR's LIF resets to v_reset; a soft-reset PLIF (v_reset=None) has no NIR "
            "equivalent. Train with a hard reset to export to NIR"
        )
    tau_steps = float(1.0 / torch.sigmoid(plif.w.detach().double()))
    r = 1.0 if plif.decay_input else tau_steps

    def full(value: float) -> np.ndarray:
        return np.full(size, value, dtype=np.float32)

    return nir.LIF(
        tau=full(tau_steps * dt),
        r=full(r),
        v_leak=full(plif.v_reset),
        v_threshold=full(plif.v_threshold),
        v_reset=full(plif.v_reset),
    )


def linear_to_nir_affine(linear: nn.Linear) -> Any:
    """``nn.Linear`` → ``nir.Affine`` (weight ``[out, in]``, bias ``[out]``)."""
    import nir

    weight = linear.weight.detach().cpu().numpy().astype(np.float32)
    bias = (
        linear.bias.detach().cpu().numpy().astype(np.float32)
        if linear.bias is not None
        else np.zeros(weight.shape[0], np.float32)
    )
    return nir.Affine(weight=weight, bias=bias)


class _GraphBuilder:
    """Collects nodes, edges and the host-op program of a cut graph."""

    def __init__(self) -> None:
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.host_ops: list[dict[str, Any]] = []

    def node(self, name: str, node: Any, *sources: str) -> str:
        self.nodes[name] = node
        self.edges.extend((source, name) for source in sources)
        return name

    def graph_input(self, name: str, size: int) -> str:
        import nir

        return self.node(f"in:{name}", nir.Input(input_type={"input": np.array([size])}))

    def graph_output(self, name: str, size: int, source: str) -> str:
        import nir

        return self.node(
            f"out:{name}", nir.Output(output_type={"output": np.array([size])}), source
        )

    def host(self, op: str, reads: list[str], writes: str, module: str = "", **extra: Any) -> None:
        entry: dict[str, Any] = {"op": op, "reads": ",".join(reads), "writes": writes}
        if module:
            entry["module"] = module
        entry.update({k: str(v) for k, v in extra.items()})
        self.host_ops.append(entry)


def build_nir_graph(model: nn.Module, *, dt: float = FRAME_DT) -> Any:
    """The spiking parts of a head as one NIR graph, cut at every non-NIR operation.

    Naming: graph inputs are ``in:<name>``, outputs ``out:<name>``; NIR nodes carry the
    PyTorch module path (``blocks.0.neuron_in``, ``blocks.0.fc1``...). The metadata holds
    ``dt``, the PLIF → LIF mapping, and ``host_ops`` (see the module docstring).

    Raises:
        ExportError: A non-spiking (``ann``) head or soft-reset neurons.
    """
    import nir

    config = model.config  # type: ignore[attr-defined]
    if config.neuron != "plif":
        raise ExportError(
            f"NIR export needs a spiking head; preset {config.preset!r} uses {config.neuron} "
            "units (export it to ONNX instead)"
        )
    width, g = config.width, _GraphBuilder()

    # Front end (host): layer sum, saturation; the projection is an Affine between cuts.
    stream = "features"
    if config.standardise_input:
        g.host("standardise", [stream], "standardised")
        stream = "standardised"
    if config.input_layers > 1:
        g.host("layer_sum", [stream], "x", "layer_weights")
        stream = "x"
    if config.saturation:
        g.host("soft_saturation", [stream], "in:projection", "saturation", xi=config.saturation_xi)
    else:
        g.host("copy", [stream], "in:projection")
    g.node(
        "projection",
        linear_to_nir_affine(model.projection),
        g.graph_input("projection", config.input_dim),
    )
    g.graph_output("projection", width, "projection")
    g.host("layer_norm", ["out:projection"], "u0", "projection_norm")

    # Calibration: its spiking layers in NIR, attention and bias projection on the host.
    calibration = model.calibration
    if calibration is not None:
        g.host("copy", ["u0"], "in:calibration.context_neuron")
        lif = g.node(
            "calibration.context_neuron",
            plif_to_nir_lif(calibration.context_neuron, width, dt=dt),
            g.graph_input("calibration.context_neuron", width),
        )
        attention = calibration.attention
        for part in ("key", "value"):
            affine = g.node(
                f"calibration.attention.{part}", linear_to_nir_affine(getattr(attention, part)), lif
            )
            g.graph_output(f"calibration.{part}", width, affine)
            g.host(
                "layer_norm",
                [f"out:calibration.{part}"],
                f"in:calibration.{part}_neuron",
                f"calibration.attention.{part}_norm",
            )
            neuron = g.node(
                f"calibration.attention.{part}_neuron",
                plif_to_nir_lif(getattr(attention, f"{part}_neuron"), width, dt=dt),
                g.graph_input(f"calibration.{part}_neuron", width),
            )
            g.graph_output(f"calibration.{part}_spikes", width, neuron)
        target = "bias" if config.context == "bias" else "readout"
        causal = config.calibration_context == "causal" and target == "bias"
        g.host(
            "prompt_attention",
            ["out:calibration.key_spikes", "out:calibration.value_spikes"],
            target,
            "calibration",
            causal=int(causal),
            output=f"{target} per frame (running context)"
            if causal
            else f"{target} per utterance (global context)",
        )

    # Blocks: u_i → LIF(+bias) → [shift] → Affine fc1 → [LN] → LIF → Affine fc2 → [LN, +u_i].
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        hidden = block.fc1.out_features
        g.host("copy", [f"u{i}"], f"in:{p}.neuron_in")
        sources = [g.graph_input(f"{p}.neuron_in", width)]
        if config.context == "bias":
            g.host("select_bias", ["bias"], f"in:{p}.bias", index=i)
            sources.append(g.graph_input(f"{p}.bias", width))
        lif_in = g.node(f"{p}.neuron_in", plif_to_nir_lif(block.neuron_in, width, dt=dt), *sources)
        g.graph_output(f"{p}.spikes", width, lif_in)
        g.host(
            "temporal_shift",
            [f"out:{p}.spikes"],
            f"in:{p}.fc1",
            f"{p}.shift",
            later=block.shift.later,
            earlier=block.shift.earlier,
        )
        fc1 = g.node(f"{p}.fc1", linear_to_nir_affine(block.fc1), g.graph_input(f"{p}.fc1", width))
        g.graph_output(f"{p}.fc1", hidden, fc1)
        g.host("layer_norm", [f"out:{p}.fc1"], f"in:{p}.neuron_hidden", f"{p}.norm1")
        lif_hidden = g.node(
            f"{p}.neuron_hidden",
            plif_to_nir_lif(block.neuron_hidden, hidden, dt=dt),
            g.graph_input(f"{p}.neuron_hidden", hidden),
        )
        fc2 = g.node(f"{p}.fc2", linear_to_nir_affine(block.fc2), lif_hidden)
        g.graph_output(f"{p}.fc2", width, fc2)
        g.host("layer_norm_residual", [f"out:{p}.fc2", f"u{i}"], f"u{i + 1}", f"{p}.norm2")

    # Read-out: per-frame classifier; the host averages it over the frames.
    last = f"u{len(model.blocks)}"
    if config.pooling == "spikes":
        g.host("copy", [last], "in:output_neuron")
        readout_source = g.node(
            "output_neuron",
            plif_to_nir_lif(model.output_neuron, width, dt=dt),
            g.graph_input("output_neuron", width),
        )
    else:
        g.host("copy", [last], "in:classifier")
        readout_source = g.graph_input("classifier", width)
    g.node("classifier", linear_to_nir_affine(model.classifier), readout_source)
    g.graph_output("logits", config.num_classes, "classifier")
    g.host(
        "mean_over_time",
        ["out:logits"] + (["readout"] if config.context == "readout" else []),
        "logits",
        "classifier",
    )
    metadata = {
        "producer": "ptssnn",
        "dt": float(dt),
        "time_step": "one step per head frame (backbone frames averaged in groups of "
        "round(dt * 50)); no padding mask: real frames only",
        "neuron_mapping": (
            "PLIF(q=1/tau_steps) -> LIF(tau=tau_steps*dt, v_leak=v_reset, r=1 (decay_input) "
            "or tau_steps, v_threshold, v_reset); exact for forward-Euler steps of dt; "
            "NIR fires on v > v_threshold, PLIF on H >= V_th"
        ),
        "edges_into_a_node": "summed (the calibration bias enters as an extra input current)",
        "host_ops": {f"{k:03d}": op for k, op in enumerate(g.host_ops)},
        "model_config": {k: str(v) for k, v in config.to_dict().items()},
    }
    return nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata=metadata)


def export_nir(
    model: nn.Module,
    path: str | Path,
    *,
    metadata: Mapping[str, Any] | None = None,
    dt: float | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """Write the spiking parts of a head as a NIR (HDF5) file.

    Args:
        model: A spiking ``ptssnn.models.PTSSNN`` (not the ``ann`` preset).
        path: Output file (``.nir``).
        metadata: Model-directory metadata; its label names are stored in the graph.
        dt: Seconds per head step; default from the model card (``frame_pool / frame_rate``,
            e.g. 0.08 s for frames pooled by 4), else one backbone frame (0.02 s).
        check: Read the file back and run it (with the host operations) on a random
            utterance; report the largest logit difference from PyTorch.

    Returns:
        A JSON-ready report: path, counts of NIR nodes by type, LIF parameters per layer,
        host operations, and (with ``check``) ``max_abs_diff``.

    Raises:
        ExportError: Non-spiking or soft-reset model; ``nir`` not installed.
    """
    try:
        import nir
    except ImportError as error:  # pragma: no cover - only without the extra
        raise ExportError("NIR export needs `pip install 'ptssnn[export]'`") from error

    model = model.eval()
    card = dict((metadata or {}).get("recognizer") or {})
    if dt is None:
        dt = float(card.get("frame_pool", 1)) / float(card.get("frame_rate", 1 / FRAME_DT))
    graph = build_nir_graph(model, dt=dt)
    labels = card.get("labels")
    if labels:
        graph.metadata["labels"] = ",".join(labels)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    kinds: dict[str, int] = {}
    for node in graph.nodes.values():
        kinds[type(node).__name__] = kinds.get(type(node).__name__, 0) + 1
    report: dict[str, Any] = {
        "format": "nir",
        "path": str(path),
        "nir_version": nir.version if hasattr(nir, "version") else "",
        "dt": dt,
        "nodes": kinds,
        "edges": len(graph.edges),
        "lif": {
            name: {
                "tau_s": float(node.tau[0]),
                "r": float(node.r[0]),
                "v_threshold": float(node.v_threshold[0]),
                "v_reset": float(node.v_reset[0]),
                "size": int(node.tau.shape[0]),
            }
            for name, node in graph.nodes.items()
            if type(node).__name__ == "LIF"
        },
        "host_ops": [op["op"] for op in graph.metadata["host_ops"].values()],
        "bytes": path.stat().st_size,
    }
    if check:
        generator = torch.Generator().manual_seed(0)
        config = model.config  # type: ignore[attr-defined]
        shape = (60, config.input_dim)
        if config.input_layers > 1:
            shape = (config.input_layers, *shape)
        features = torch.randn(shape, generator=generator)
        reread = nir.read(str(path))
        got = run_nir_head(reread, model, features)
        with torch.inference_mode():
            want = model(features[None]).float()[0].numpy()
        report["max_abs_diff"] = float(np.abs(got - want).max())
    return report


# ---------------------------------------------------------------------- reference executor
def simulate_nir(graph: Any, feeds: Mapping[str, np.ndarray], dt: float) -> dict[str, np.ndarray]:
    """Run the part of a NIR graph computable from ``feeds`` over time (Euler steps of ``dt``).

    Supports ``Input``, ``Output``, ``Affine``, ``Linear`` and ``LIF`` nodes; the inputs of a
    node are the sum of its incoming edges.

    Args:
        graph: A ``nir.NIRGraph``.
        feeds: Graph input node name → ``[T, n]`` float32 sequence.
        dt: Seconds per step.

    Returns:
        Graph output node name → ``[T, n]`` for every output reachable from the feeds.
    """
    predecessors: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for source, target in graph.edges:
        predecessors[target].append(source)
    ready = set(feeds)
    order: list[str] = []
    changed = True
    while changed:  # fixpoint: nodes whose every input is computable, in dependency order
        changed = False
        for name in graph.nodes:
            if (
                name not in ready
                and predecessors[name]
                and all(p in ready for p in predecessors[name])
            ):
                ready.add(name)
                order.append(name)
                changed = True
    steps = next(iter(feeds.values())).shape[0]
    state: dict[str, np.ndarray] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    for t in range(steps):
        values = {name: np.asarray(feed[t], dtype=np.float32) for name, feed in feeds.items()}
        for name in order:
            node = graph.nodes[name]
            current = values[predecessors[name][0]]
            for extra in predecessors[name][1:]:
                current = current + values[extra]
            kind = type(node).__name__
            if kind == "Affine":
                values[name] = node.weight @ current + node.bias
            elif kind == "Linear":
                values[name] = node.weight @ current
            elif kind == "LIF":
                v = state.get(name, node.v_reset.astype(np.float32))
                q = (np.float32(dt) / node.tau).astype(np.float32)
                v = v + ((node.v_leak - v) + node.r * current) * q
                fired = v > node.v_threshold
                state[name] = np.where(fired, node.v_reset, v).astype(np.float32)
                values[name] = fired.astype(np.float32)
            elif kind == "Output":
                values[name] = current
                outputs.setdefault(name, []).append(current)
            else:
                raise ExportError(f"the reference executor cannot run NIR node type {kind}")
    return {name: np.stack(seq) for name, seq in outputs.items()}


def run_nir_head(graph: Any, model: nn.Module, features: torch.Tensor) -> np.ndarray:
    """Logits of one utterance from an exported NIR graph plus the host operations.

    The NIR segments run in :func:`simulate_nir`; the host operations listed in the graph's
    metadata run with the PyTorch modules they name.

    Args:
        graph: The graph (e.g. ``nir.read(path)``).
        model: The head the graph was exported from (weights of the host operations).
        features: ``[T, D_in]`` (or ``[L, T, D_in]``) of one utterance, all frames real.

    Returns:
        ``[C]`` logits.
    """
    dt = float(graph.metadata["dt"])
    host_ops = [graph.metadata["host_ops"][k] for k in sorted(graph.metadata["host_ops"])]
    modules = dict(model.named_modules(remove_duplicate=False))
    seq: dict[str, torch.Tensor] = {}
    x = features.float()
    seq["features"] = x  # [T, D_in] or [L, T, D_in]
    computed: set[str] = set()

    def fetch(name: str) -> torch.Tensor:
        if name.startswith("out:") and name not in seq:
            feeds = {
                k: v.numpy() for k, v in seq.items() if k.startswith("in:") and k not in computed
            }
            # Run the NIR segment(s) fed by the inputs written since the last run.
            results = simulate_nir(graph, feeds, dt) if feeds else {}
            computed.update(feeds)
            seq.update({k: torch.from_numpy(v) for k, v in results.items()})
        return seq[name]

    with torch.inference_mode():
        for op in host_ops:
            kind, writes = op["op"], op["writes"]
            reads = [fetch(r) for r in op["reads"].split(",") if r]
            module = modules.get(op.get("module", ""))
            if kind == "copy":
                out = reads[0]
            elif kind == "standardise":
                out = model.standardise_features(reads[0][None])[0]
            elif kind == "layer_sum":
                weights = torch.softmax(model.layer_weights, 0)
                out = torch.einsum("ltd,l->td", reads[0], weights)
            elif kind in ("soft_saturation", "layer_norm"):
                out = module(reads[0])
            elif kind == "layer_norm_residual":
                out = reads[1] + module(reads[0])
            elif kind == "temporal_shift":
                out = module(reads[0][:, None])[:, 0]
            elif kind == "prompt_attention":
                key, value = reads[0][:, None], reads[1][:, None]  # [T, 1, D]
                attention = module.attention
                queries = attention.queries_to_spikes(module.prompts)
                heads, d = attention.heads, attention.dim // attention.heads
                kh = key.reshape(key.shape[0], 1, heads, d)
                vh = value.reshape(value.shape[0], 1, heads, d)
                qh = queries.reshape(queries.shape[0], heads, d)
                scores = torch.einsum("tbhd,mhd->tbmh", kh, qh) / d
                steps, count = key.shape[0], queries.shape[0]
                if int(op.get("causal", "0")):  # running mean up to each frame: [T, 1, M, D]
                    per_frame = (scores[..., None] * vh[:, :, None]).reshape(steps, 1, count, -1)
                    frames = torch.arange(1, steps + 1, dtype=per_frame.dtype)
                    mean = per_frame.cumsum(0) / frames[:, None, None, None]
                else:  # mean over the utterance: [1, M, D]
                    mean = (
                        torch.einsum("tbmh,tbhd->bmhd", scores, vh).reshape(1, count, attention.dim)
                        / steps
                    )
                prompts = module.prompts + attention.out_norm(attention.out(mean))
                out = torch.einsum("lm,...md->...ld", module.mixing, module.projection(prompts))
                # bias: [n_targets, D] or per frame [T, n_targets, D]; readout: [D]
                out = out[..., 0, :, :] if writes == "bias" else out[0, 0]
            elif kind == "select_bias":
                index = int(op["index"])
                bias = reads[0][..., index, :]  # [D] or per frame [T, D]
                out = bias.expand(seq["u0"].shape[0], -1) if bias.dim() == 1 else bias
            elif kind == "mean_over_time":
                out = reads[0].mean(0)
                if len(reads) > 1:  # +ssla: the read-out context goes through the classifier
                    out = out + reads[1] @ model.classifier.weight.T
            else:
                raise ExportError(f"unknown host operation {kind!r} in the NIR metadata")
            seq[writes] = out
    return seq["logits"].numpy()
