"""ONNX export of the whole head: ``(features, mask) → logits`` for onnxruntime on a CPU.

The graph has dynamic batch and time axes. The only recurrence in the head is the PLIF
membrane update; a traced Python loop would be unrolled into a fixed number of steps, so
the model is traced with its PLIF layers switched to the ``script`` backend
(``with ptssnn.snn.use_backend(model, "script")``: an attribute of the model's own layers,
restored afterwards), a TorchScript loop that the exporter turns into one ONNX ``Loop`` node
whose trip count is the input's time length. The loop evaluates exactly the expressions of
:func:`ptssnn.snn.plif.plif_step`, in the same order, so spikes match PyTorch's bit for bit
on the same inputs.

Everything else in the head (LayerNorm, tanh saturation, temporal shift, linear attention,
calibration bias, pooling, classifier) is ordinary tensor algebra and is traced as is.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptssnn.errors import PtssnnError
from ptssnn.jsonio import dumps as strict_json
from ptssnn.snn.plif import use_backend

#: Default opset; 17 has LayerNormalization and everything the head needs.
DEFAULT_OPSET = 17
#: Opsets the head can be written in: LayerNormalization needs 17, and 20 is the newest the
#: TorchScript-based exporter writes.
OPSET_RANGE = (17, 20)


class ExportError(PtssnnError):
    """A model that cannot be exported as asked (missing package, unsupported layer)."""


def check_output_parent(path: Path) -> None:
    """Refuse an output whose parent folder is missing (no folder trees made from a typo)."""
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ExportError(f"{path}: the folder {parent} does not exist (create it first)")


def example_inputs(
    model: torch.nn.Module, batch: int = 2, frames: int = 50, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs in the head's layout (second item half padded) for tracing and checks.

    A head that standardises its input gets features drawn from its input moments
    (``mean + std·N(0, 1)`` per hidden state and channel), so the check sees currents of the
    size real features give. Raw N(0, 1) features against a whisper-base head's moments (some
    channels' std is 0.01) are tens of standard deviations out: the membranes then sit
    anywhere, a neuron a float-rounding step from its threshold fires in one runtime and not
    the other, and one flipped spike moves a logit by ~1e-3 (seen on a trained CASIA head).

    Returns:
        ``features [B, T, D]`` (or ``[B, L, T, D]`` for a multi-layer head) and ``mask [B, T]``.
    """
    config = model.config  # type: ignore[attr-defined]
    generator = torch.Generator().manual_seed(seed)
    layers = int(getattr(config, "input_layers", 1) or 1)
    shape = (batch, frames, config.input_dim)
    if layers > 1:
        shape = (batch, layers, frames, config.input_dim)
    features = torch.randn(shape, generator=generator)
    if getattr(model, "standardises_input", False):
        mean = model.input_mean.detach().float()  # type: ignore[union-attr]
        std = model.input_std.detach().float()  # type: ignore[union-attr]
        if layers > 1:
            mean, std = mean[:, None, :], std[:, None, :]
        else:
            mean, std = mean[0], std[0]
        features = mean + std * features
    mask = torch.ones(batch, frames, dtype=torch.bool)
    if batch > 1:
        mask[-1, frames // 2 :] = False
    return features, mask


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: Mapping[str, Any] | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """Export the head to an ONNX file and (by default) check it against PyTorch.

    Args:
        model: A ``ptssnn.models.PTSSNN`` (any preset).
        path: Output ``.onnx`` file.
        opset: ONNX opset version.
        metadata: Model-directory metadata (labels, backbone...); stored as JSON in the ONNX
            model's ``metadata_props`` (key ``ptssnn``) so the file is self-describing.
        check: Run onnxruntime on random inputs of two lengths and batch sizes and report
            the largest absolute logit difference.

    Returns:
        A JSON-ready report: path, opset, input/output names and shapes, size in bytes and,
        with ``check``, ``max_abs_diff``.

    Raises:
        ExportError: ``onnx``/``onnxruntime`` missing, or the check finds a difference above
            1e-4.
    """
    try:
        import onnx
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ExportError("ONNX export needs `pip install 'ptssnn[export]'`") from error

    if not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise ExportError(
            f"opset {opset} is not supported: use {OPSET_RANGE[0]}-{OPSET_RANGE[1]} "
            "(LayerNormalization needs 17)"
        )
    path = Path(path)
    check_output_parent(path)
    model = model.eval()
    features, mask = example_inputs(model)
    time_axis = features.dim() - 2
    with use_backend(model, "script"), torch.no_grad(), warnings.catch_warnings():
        # The TorchScript-based exporter warns about its own deprecation and about traced
        # shape arithmetic; the check below is what tells whether the graph is right.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (features, mask),
            str(path),
            dynamo=False,
            input_names=["features", "mask"],
            output_names=["logits"],
            dynamic_axes={
                "features": {0: "batch", time_axis: "time"},
                "mask": {0: "batch", 1: "time"},
                "logits": {0: "batch"},
            },
            opset_version=opset,
        )
    proto = onnx.load(str(path))
    if metadata is not None:
        onnx.helper.set_model_props(
            proto, {"ptssnn": strict_json(dict(metadata), sort_keys=True, default=str)}
        )
        onnx.save(proto, str(path))
    onnx.checker.check_model(proto)
    report: dict[str, Any] = {
        "format": "onnx",
        "path": str(path),
        "opset": opset,
        "inputs": {
            "features": ["batch", "layers", "time", "dim"]
            if features.dim() == 4
            else ["batch", "time", "dim"],
            "mask": ["batch", "time"],
        },
        "outputs": {"logits": ["batch", "classes"]},
        "bytes": path.stat().st_size,
    }
    if check:
        worst = 0.0
        for batch, frames, seed in ((1, 37, 1), (3, 123, 2)):
            x, m = example_inputs(model, batch=batch, frames=frames, seed=seed)
            worst = max(
                worst, float(np.abs(run_onnx(path, x, m) - _torch_logits(model, x, m)).max())
            )
        report["max_abs_diff"] = worst
        if worst > 1e-4:
            raise ExportError(
                f"the exported graph differs from PyTorch by {worst:.3g} (> 1e-4); "
                "please report this with the model's config"
            )
    return report


def _torch_logits(model: torch.nn.Module, features: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(features, mask).float().numpy()


def run_onnx(path: str | Path, features: Any, mask: Any) -> np.ndarray:
    """Logits from an exported head with onnxruntime (CPU).

    Args:
        path: The ``.onnx`` file.
        features: ``[B, T, D]`` (or ``[B, L, T, D]``) float32 array or tensor.
        mask: ``[B, T]`` bool array or tensor.

    Returns:
        ``[B, C]`` float32 logits.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {
        "features": np.asarray(features, dtype=np.float32),
        "mask": np.asarray(mask, dtype=bool),
    }
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feed.items() if k in names})[0]
