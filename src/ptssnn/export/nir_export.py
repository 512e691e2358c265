"""NIR export: the spiking core of a PTS-SNN head as NIR graphs that neuromorphic tools load as is.

**Layout.** ``export_nir(model, directory, target=..., dt=...)`` writes a directory:

- ``<segment>.nir``: one NIR graph per stretch of the head that NIR can hold. Every graph is
  a chain ``input → node → … → output`` (one ``Input`` named ``input``, one ``Output`` named
  ``output``, one edge into every node), which is what snntorch, norse, sinabs and nirtorch
  execute. Nodes are named after the PyTorch module with ``_`` for ``.``
  (``blocks_0_neuron_in``); the graph metadata maps them back.
- ``host.safetensors``: the parameters of every host operation (LayerNorms, saturation, layer
  weights, input moments, prompts, attention and calibration weights), named as in the
  model's ``state_dict``.
- ``manifest.json``: the program (NIR segments and host operations in execution order, with
  the sequences they read and write), the target, ``dt``, labels and the model config.

:func:`ptssnn.export.nir_host.run_export` runs a directory with nothing else (no model, no
checkpoint): the reference host runner.

**PLIF → NIR LIF.** NIR's LIF is ``τ·dv/dt = (v_leak − v) + R·I``, hard reset to ``v_reset``.
A forward-Euler step of ``dt`` is ``v ← v + (dt/τ)·((v_leak − v) + R·I)``; it is the PLIF
charge with ``q = 1/τ_steps = sigmoid(w)`` when ``τ = dt/q``, ``v_leak = v_reset``, ``R = 1``
(``decay_input``) or ``R = τ_steps``. ``τ`` is chosen among the float32 neighbours of
``dt/q`` so that ``float32(dt)/τ`` is exactly the model's ``q``. The model fires on
``H ≥ V_th``; so does the reference simulator. snntorch and norse fire on ``v > V_th`` (the
two differ only when a membrane lands exactly on the threshold). Soft reset has no NIR
equivalent and is refused.

**Targets** (:data:`TARGETS`): where the consumers' conventions differ from NIR's, the file
is written in the consumer's:

- ``nir``: the NIR spec; ``dt`` (default: one head frame, ``frame_pool / 50`` s) in the
  metadata of every graph.
- ``snntorch`` (``snntorch.import_nir.import_from_nir``): snntorch assumes ``dt = 1e-4`` s, so
  ``τ = 1e-4/q``; needs ``v_reset = 0``.
- ``norse`` (``norse.torch.from_nir(graph, dt=dt)``): ``τ = dt/q`` with norse's default
  ``dt = 1e-3`` s unless ``--dt`` says otherwise (pass the same ``dt`` to ``from_nir``);
  norse ignores ``R`` and ``v_reset``, so it needs ``decay_input`` and ``v_reset = 0``.
- ``sinabs`` (``sinabs.from_nir(graph, batch_size=1)``): sinabs reads ``τ`` in steps with
  ``v ← exp(−1/τ)·v + I`` and ignores ``R``: the file has ``τ = −1/ln(1 − q)`` and the
  threshold ``V_th/q`` (the same neuron, with its membrane scaled by ``1/q``). sinabs's
  importer always builds multi-spike neurons with subtractive reset: to reproduce the model
  set ``spike_fn=SingleSpike`` and ``reset_fn=MembraneReset`` on the loaded layers
  (docs/export.md); needs ``v_reset = 0``.

**What stays on the host, and why** (each a host operation of the manifest):

- the per-channel input standardisation and the learned layer sum: affine, so when there
  is no saturation they are folded into the first ``Affine`` (``projection``); with the
  saturation a per-frame LayerNorm comes first, so they cannot be;
- soft saturation ``tanh(ξ·LayerNorm)`` and every ``LayerNorm``: per-frame statistics
  (division by the frame's own standard deviation), not an affine map (the ``fbank`` heads'
  ``tanh(ξ·x)``, without the LayerNorm, is per element but not affine either);
- the temporal shift: the one-step-*earlier* channels are anti-causal;
- the prompt attention of the calibration (products of spike trains, a mean over the
  utterance) and its projection to bias voltages; the bias then enters the block's input
  graph as explicit input current: its ``input`` is ``[u; b]`` (``2·width``) and an
  ``Affine`` ``[I I]`` sums them, exactly ``u + b``;
- the residual additions (they add LayerNorm outputs) and the mean over time. The
  classifier is linear, so it runs per frame in the read-out graph; the host averages.

There is no padding mask in NIR: one utterance at a time, real frames only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ptssnn.export.nir_format import FORMAT, HOST_PARAMETERS, MANIFEST
from ptssnn.export.nir_host import compare_with_model
from ptssnn.export.onnx_export import ExportError, check_output_parent
from ptssnn.jsonio import dumps as strict_json

#: Seconds per backbone frame (50 frames/s): one PLIF step per head frame.
FRAME_DT = 1.0 / 50.0

#: Export conventions, per consumer (see the module docstring).
TARGETS: tuple[str, ...] = ("nir", "snntorch", "norse", "sinabs")

#: The time base each target assumes when ``dt`` is not given (None: the head's frame).
TARGET_DT: dict[str, float | None] = {"nir": None, "snntorch": 1e-4, "norse": 1e-3,
                                      "sinabs": None}



def node_name(module_path: str) -> str:
    """NIR node name for a module path (consumers build torch modules named after nodes,
    which may not contain dots)."""
    return module_path.replace(".", "_")


def _tau_for(q: np.float32, dt: float) -> np.float32:
    """A float32 τ with ``float32(dt) / τ == q`` exactly (searched around ``dt/q``)."""
    dt32 = np.float32(dt)
    tau = np.float32(float(dt32) / float(q))
    candidates = [tau]
    up = down = tau
    for _ in range(8):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
        candidates += [up, down]
    for candidate in candidates:
        if dt32 / candidate == q:
            return candidate
    return tau


def plif_to_nir_lif(plif: nn.Module, size: int, *, dt: float = FRAME_DT,
                    target: str = "nir") -> Any:
    """A NIR ``LIF`` node for a PLIF layer, in the conventions of ``target``.

    Args:
        plif: a :class:`ptssnn.snn.PLIF` layer (hard reset).
        size: number of neurons (NIR wants one value per neuron: the layer's scalar ``w`` is
            broadcast).
        dt: seconds per step (ignored by ``sinabs``, which counts τ in steps).
        target: one of :data:`TARGETS`.

    Raises:
        ExportError: not a PLIF layer, soft reset, or options the target cannot express.
    """
    import nir

    from ptssnn.snn.plif import PLIF

    if not isinstance(plif, PLIF):
        raise ExportError(
            f"NIR export needs spiking neurons; found {type(plif).__name__} (the 'ann' preset "
            "has no spiking equivalent: export it to ONNX instead)")
    p = plif.params
    if p.soft_reset:
        raise ExportError(
            "NIR's LIF resets to v_reset; a soft-reset PLIF (v_reset=None) has no NIR "
            "equivalent. Train with a hard reset to export to NIR")
    if target != "nir" and p.v_reset != 0.0:
        raise ExportError(f"{target} resets to 0 and has no leak voltage: export with "
                          f"--target nir (this model has v_reset={p.v_reset})")
    if target == "norse" and not p.decay_input:
        raise ExportError("norse ignores NIR's r, which a PLIF without decay_input needs: "
                          "export with --target nir or snntorch")
    q = torch.sigmoid(plif.w.detach()).to(torch.float32).numpy()
    tau_steps = 1.0 / float(q)

    def full(value: float) -> np.ndarray:
        return np.full(size, value, dtype=np.float32)

    if target == "sinabs":
        scale = float(q) if p.decay_input else 1.0  # sinabs's membrane is V / scale
        return nir.LIF(tau=full(-1.0 / math.log1p(-float(q))), r=full(1.0),
                       v_leak=full(0.0), v_threshold=full(p.v_threshold / scale),
                       v_reset=full(0.0))
    return nir.LIF(
        tau=full(_tau_for(q, dt)),
        r=full(1.0 if p.decay_input else tau_steps),
        v_leak=full(p.reset_value),
        v_threshold=full(p.v_threshold),
        v_reset=full(p.reset_value),
    )


def _affine(weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
    import nir

    w = weight.detach().cpu().to(torch.float32).numpy()
    b = (np.zeros(w.shape[0], np.float32) if bias is None
         else bias.detach().cpu().to(torch.float32).numpy())
    return nir.Affine(weight=w, bias=b)


def linear_to_nir_affine(linear: nn.Linear) -> Any:
    """``nn.Linear`` → ``nir.Affine`` (weight ``[out, in]``, bias ``[out]``, zeros if none)."""
    return _affine(linear.weight, linear.bias)


@dataclass
class _Program:
    """The export being built: NIR segments (chains), host steps and host tensors."""

    dt: float
    target: str
    segments: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def chain(self, name: str, reads: str, writes: str, size: int,
              nodes: list[tuple[str, Any]]) -> None:
        """A NIR graph ``input → nodes… → output`` run on sequence ``reads``."""
        import nir

        names = ["input", *(node_name(path) for path, _ in nodes), "output"]
        out_size = size
        for _, node in nodes:
            out_size = int(node.weight.shape[0]) if hasattr(node, "weight") else out_size
        graph_nodes = {"input": nir.Input(input_type={"input": np.array([size])})}
        graph_nodes.update({node_name(path): node for path, node in nodes})
        graph_nodes["output"] = nir.Output(output_type={"output": np.array([out_size])})
        edges = list(itertools.pairwise(names))
        metadata = {
            "producer": "ptssnn", "format": FORMAT, "segment": name, "target": self.target,
            "dt": float(self.dt), "modules": {node_name(p): p for p, _ in nodes},
            "firing": "model: H >= v_threshold (hard reset to v_reset)",
        }
        self.segments[name] = nir.NIRGraph(nodes=graph_nodes, edges=edges, metadata=metadata)
        self.steps.append({"run": name, "reads": reads, "writes": writes})

    def host(self, op: str, reads: list[str], writes: str, module: nn.Module | None = None,
             prefix: str = "", **attrs: Any) -> None:
        """A host operation; ``module``'s tensors are stored under ``prefix``."""
        step: dict[str, Any] = {"op": op, "reads": reads, "writes": writes}
        if module is not None:
            step["params"] = prefix
            for key, value in module.state_dict().items():
                self.tensors[f"{prefix}.{key}"] = value.detach().cpu().to(torch.float32)
        step.update(attrs)
        self.steps.append(step)

    def tensor(self, name: str, value: torch.Tensor) -> str:
        self.tensors[name] = value.detach().cpu().to(torch.float32).contiguous()
        return name


def _fold_input(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Projection weight/bias with standardisation and layer sum folded in (float64 maths).

    Input of the folded map: the features flattened layer-major, ``[L·D_in]``.
    """
    c = model.config
    weight = model.projection.weight.detach().double()  # [W, D]
    bias = model.projection.bias.detach().double()
    layers = c.input_layers
    mix = (torch.softmax(model.layer_weights.detach().double(), 0) if layers > 1
           else torch.ones(1, dtype=torch.float64))
    mean = model.input_mean.detach().double()  # [L, D]
    std = model.input_std.detach().double()
    if not c.standardise_input:
        mean, std = torch.zeros_like(mean), torch.ones_like(std)
    scale = mix[:, None] / std  # [L, D]: x_ld ↦ mix_l·(x_ld − m_ld)/s_ld
    folded = (weight[:, None, :] * scale[None]).reshape(weight.shape[0], -1)
    folded_bias = bias - (weight[:, None, :] * (scale * mean)[None]).sum((1, 2))
    return folded.float(), folded_bias.float()


def _foldable(norm: nn.Module | None) -> bool:
    """A norm that is a fixed affine map at inference (the batch norm of ``neuromorphic``)."""
    from ptssnn.snn.norm import MaskedBatchNorm

    return isinstance(norm, MaskedBatchNorm)


def _fold_norm(weight: torch.Tensor, bias: torch.Tensor | None,
               norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``norm(W·x + b)`` as one affine map ``W'·x + b'`` (float64 maths, float32 result)."""
    scale, shift = (t.detach().double() for t in norm.affine())
    w = weight.detach().double()
    b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else bias.detach().double()
    return (scale[:, None] * w).float(), (scale * b + shift).float()


def build_program(model: nn.Module, *, dt: float = FRAME_DT, target: str = "nir") -> _Program:
    """The export of ``model``: its NIR segments and host program (nothing written).

    Raises:
        ExportError: a non-spiking (``ann``) head, soft-reset neurons, an unknown target, or
            options the target cannot express.
    """
    if target not in TARGETS:
        raise ExportError(f"unknown NIR target {target!r}; choose one of {', '.join(TARGETS)}")
    c = model.config
    if c.neuron != "plif":
        raise ExportError(
            f"NIR export needs a spiking head; preset {c.preset!r} uses {c.neuron} "
            "units (export it to ONNX instead)")
    if getattr(c, "readout", "mean") != "mean":
        # The host program knows the mean over time only; refuse rather than export wrong.
        raise ExportError(
            f"NIR export supports the mean read-out only; this head reads {c.readout!r} "
            "(export it to ONNX instead)")
    prog, width = _Program(dt=dt, target=target), c.width

    def lif(path: str, size: int) -> tuple[str, Any]:
        return path, plif_to_nir_lif(model.get_submodule(path), size, dt=dt, target=target)

    def affine(path: str, norm: nn.Module | None = None) -> tuple[str, Any]:
        """The Linear at ``path``, with a following batch norm folded in."""
        linear = model.get_submodule(path)
        if not _foldable(norm):
            return path, linear_to_nir_affine(linear)
        return path, _affine(*_fold_norm(linear.weight, linear.bias, norm))

    # Front end: fold standardisation and layer sum into the projection when nothing
    # non-linear sits between them.
    batch_norm = _foldable(model.projection_norm)
    u0 = "u0" if batch_norm else "p"
    if not c.saturation:
        weight, bias = _fold_input(model)
        if batch_norm:
            weight, bias = _fold_norm(weight, bias, model.projection_norm)
        prog.host("flatten_layers", ["features"], "x")
        prog.chain("projection", "x", u0, c.input_layers * c.input_dim,
                   [("projection", _affine(weight, bias))])
    else:
        stream = "features"
        if c.standardise_input:
            prog.tensor("input_mean", model.input_mean)
            prog.tensor("input_std", model.input_std)
            prog.host("standardise", [stream], "standardised", params="")
            stream = "standardised"
        if c.input_layers > 1:
            prog.tensor("layer_weights", model.layer_weights)
            prog.host("layer_sum", [stream], "x", params="")
        else:
            prog.host("flatten_layers", [stream], "x")
        prog.host("soft_saturation", ["x"], "xs", model.saturation, "saturation",
                  xi=model.saturation.xi, norm=c.saturation_norm)
        prog.chain("projection", "xs", u0, c.input_dim,
                   [affine("projection", model.projection_norm)])
    if not batch_norm:
        prog.host("layer_norm", ["p"], "u0", model.projection_norm, "projection_norm")

    # Calibration: spiking layers and their Affines in NIR, attention on the host.
    if model.calibration is not None:
        cal = "calibration"
        prog.chain(f"{cal}.context", "u0", "context_spikes", width,
                   [lif(f"{cal}.context_neuron", width)])
        for part in ("key", "value"):
            att = f"{cal}.attention"
            norm = model.get_submodule(f"{att}.{part}_norm")
            if _foldable(norm):  # context spikes → Affine (norm folded) → LIF
                prog.chain(f"{cal}.{part}", "context_spikes", f"{part}_spikes", width,
                           [affine(f"{att}.{part}", norm),
                            lif(f"{att}.{part}_neuron", width)])
                continue
            prog.chain(f"{cal}.{part}.fc", "context_spikes", f"{part}_current", width,
                       [affine(f"{att}.{part}")])
            prog.host("layer_norm", [f"{part}_current"], f"{part}_normed",
                      model.get_submodule(f"{att}.{part}_norm"), f"{att}.{part}_norm")
            prog.chain(f"{cal}.{part}", f"{part}_normed", f"{part}_spikes", width,
                       [lif(f"{att}.{part}_neuron", width)])
        target_name = "bias" if c.context == "bias" else "readout"
        causal = c.calibration_context == "causal" and target_name == "bias"
        attention = model.calibration.attention
        prog.host("prompt_attention", ["key_spikes", "value_spikes"], target_name,
                  model.calibration, cal, heads=attention.heads, causal=causal,
                  output=target_name)

    # Blocks: [u; b] → Affine [I I] → LIF → shift (host) → fc1 → LN (host) → LIF → fc2.
    for i, block in enumerate(model.blocks):
        p, hidden = f"blocks.{i}", block.fc1.out_features
        u = f"u{i}"
        if c.context == "bias":
            prog.host("select_bias", ["bias", u], f"b{i}", index=i)
            prog.host("concat", [u, f"b{i}"], f"ub{i}")
            eye = torch.eye(width)
            current = (f"{p}.current", _affine(torch.cat([eye, eye], 1), torch.zeros(width)))
            prog.chain(f"{p}.input", f"ub{i}", f"s{i}", 2 * width,
                       [current, lif(f"{p}.neuron_in", width)])
        else:
            prog.chain(f"{p}.input", u, f"s{i}", width, [lif(f"{p}.neuron_in", width)])
        prog.host("temporal_shift", [f"s{i}"], f"shifted{i}", later=block.shift.later,
                  earlier=block.shift.earlier)
        if _foldable(block.norm1) and _foldable(block.norm2):
            # shifted spikes → fc1 (norm folded) → LIF → fc2 (norm folded); host: u + Δ.
            prog.chain(f"{p}.mlp", f"shifted{i}", f"d{i}", width,
                       [affine(f"{p}.fc1", block.norm1), lif(f"{p}.neuron_hidden", hidden),
                        affine(f"{p}.fc2", block.norm2)])
            prog.host("residual", [f"d{i}", u], f"u{i + 1}")
            continue
        prog.chain(f"{p}.fc1", f"shifted{i}", f"h{i}", width, [affine(f"{p}.fc1")])
        prog.host("layer_norm", [f"h{i}"], f"hn{i}", block.norm1, f"{p}.norm1")
        prog.chain(f"{p}.hidden", f"hn{i}", f"d{i}", hidden,
                   [lif(f"{p}.neuron_hidden", hidden), affine(f"{p}.fc2")])
        prog.host("layer_norm_residual", [f"d{i}", u], f"u{i + 1}", block.norm2, f"{p}.norm2")

    # Read-out: the classifier per frame in NIR; the host averages over the frames.
    last = f"u{len(model.blocks)}"
    nodes = [affine("classifier")]
    if c.pooling == "spikes":
        nodes.insert(0, lif("output_neuron", width))
    prog.chain("readout", last, "frame_logits", width, nodes)
    reads = ["frame_logits"]
    if c.context == "readout":
        prog.tensor("classifier.weight", model.classifier.weight)
        reads.append("readout")
    prog.host("mean_over_time", reads, "logits", params="")
    return prog


def export_nir(
    model: nn.Module,
    directory: str | Path,
    *,
    target: str = "nir",
    metadata: Mapping[str, Any] | None = None,
    dt: float | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """Write the spiking core of a head as NIR graphs plus its host program (a directory).

    Args:
        model: a spiking ``ptssnn.models.PTSSNN`` (not the ``ann`` preset).
        directory: output directory (created; existing export files are replaced).
        target: ``nir``, ``snntorch``, ``norse`` or ``sinabs`` (see :data:`TARGETS`).
        metadata: model-directory metadata; its label names go into the manifest.
        dt: seconds per step written into every LIF. Default: the target's time base
            (:data:`TARGET_DT`), else one head frame (``frame_pool / frame_rate`` from the
            model card, 0.02 s without one). snntorch only runs at ``dt = 1e-4``.
        check: run the written directory with the reference host runner on a random
            utterance and report the largest logit difference from PyTorch and whether every
            spike matches.

    Returns:
        A JSON-ready report: directory, target, dt, segments (graph names and node types),
        host operations, LIF parameters and (with ``check``) ``max_abs_diff`` and
        ``spikes_equal``.

    Raises:
        ExportError: a model or option the target cannot express; ``nir`` not installed.
    """
    try:
        import nir
    except ImportError as error:  # pragma: no cover - only without the extra
        raise ExportError("NIR export needs `pip install 'ptssnn[export]'`") from error
    from safetensors.torch import save_file

    model = model.eval()
    card = dict((metadata or {}).get("recognizer") or {})
    frame_dt = float(card.get("frame_pool", 1)) / float(card.get("frame_rate", 1 / FRAME_DT))
    if target not in TARGETS:
        raise ExportError(f"unknown NIR target {target!r}; choose one of {', '.join(TARGETS)}")
    if dt is None:
        dt = TARGET_DT[target] or frame_dt
    if dt is None or not dt > 0:
        raise ExportError(f"dt must be a positive number of seconds, got {dt}")
    if target == "snntorch" and not math.isclose(dt, 1e-4):
        raise ExportError(f"snntorch's NIR import assumes dt = 1e-4 s; got --dt {dt}")
    prog = build_program(model, dt=dt, target=target)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ExportError(f"{directory} exists and is not a directory (a NIR export is a "
                          "directory of graphs)")
    check_output_parent(directory)
    directory.mkdir(exist_ok=True)
    for old in directory.glob("*.nir"):
        old.unlink()
    for name, graph in prog.segments.items():
        nir.write(str(directory / f"{name}.nir"), graph)
    save_file(prog.tensors, str(directory / HOST_PARAMETERS))
    manifest = {
        "format": FORMAT,
        "producer": "ptssnn",
        "target": target,
        "dt": dt,
        "frame_dt": frame_dt,
        "labels": list(card.get("labels") or []),
        "segments": {name: f"{name}.nir" for name in prog.segments},
        "program": prog.steps,
        "model_config": model.config.to_dict(),
    }
    (directory / MANIFEST).write_text(strict_json(manifest, indent=1))
    report: dict[str, Any] = {
        "format": "nir",
        "directory": str(directory),
        "target": target,
        "dt": dt,
        "nir_version": getattr(nir, "version", ""),
        "segments": {name: [type(n).__name__ for n in g.nodes.values()]
                     for name, g in prog.segments.items()},
        "host_ops": [step["op"] for step in prog.steps if "op" in step],
        "lif": {
            graph.metadata["modules"][node]: {
                "tau": float(graph.nodes[node].tau[0]), "r": float(graph.nodes[node].r[0]),
                "v_threshold": float(graph.nodes[node].v_threshold[0]),
                "size": int(graph.nodes[node].tau.shape[0])}
            for graph in prog.segments.values() for node in graph.nodes
            if type(graph.nodes[node]).__name__ == "LIF"
        },
        "bytes": sum(f.stat().st_size for f in directory.iterdir() if f.is_file()),
    }
    if check:
        generator = torch.Generator().manual_seed(0)
        shape = (60, model.config.input_dim)
        if model.config.input_layers > 1:
            shape = (model.config.input_layers, *shape)
        report.update(compare_with_model(directory, model, torch.randn(shape,
                                                                       generator=generator)))
    return report
