"""Export a trained head: ONNX (the whole head, for onnxruntime) and NIR (the spiking core).

- :func:`export_onnx`: ``(features [B, T, D], mask [B, T]) → logits [B, C]``, dynamic batch
  and time axes, checked against PyTorch.
- :func:`export_nir`: a directory of NIR chain graphs (``input → Affine/LIF … → output``) in
  the conventions of a target tool (``nir``, ``snntorch``, ``norse``, ``sinabs``), the host
  program (``manifest.json``) and the host operations' tensors (``host.safetensors``); see
  :mod:`ptssnn.export.nir_export`. :func:`run_export` rebuilds the head's logits from the
  directory alone (:mod:`ptssnn.export.nir_host`).
"""

from __future__ import annotations

from ptssnn.export.nir_export import (
    FRAME_DT,
    TARGET_DT,
    TARGETS,
    build_program,
    export_nir,
    plif_to_nir_lif,
)
from ptssnn.export.nir_host import NIRExport, compare_with_model, run_export, simulate_nir
from ptssnn.export.onnx_export import ExportError, export_onnx, run_onnx

__all__ = [
    "FRAME_DT",
    "TARGETS",
    "TARGET_DT",
    "ExportError",
    "NIRExport",
    "build_program",
    "compare_with_model",
    "export_nir",
    "export_onnx",
    "plif_to_nir_lif",
    "run_export",
    "run_onnx",
    "simulate_nir",
]
