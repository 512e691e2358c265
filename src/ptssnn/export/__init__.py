"""Export a trained head: ONNX (the whole head, for onnxruntime) and NIR (the spiking part).

- :func:`export_onnx`: ``(features [B, T, D], mask [B, T]) → logits [B, C]``, dynamic batch
  and time axes, checked against PyTorch.
- :func:`export_nir`: the spiking subgraph as a NIR graph (``Affine`` + ``LIF`` nodes), cut
  at the operations NIR cannot hold; see :mod:`ptssnn.export.nir_export` for the PLIF → LIF
  mapping and the host operations. :func:`run_nir_head` runs an exported graph.
"""

from __future__ import annotations

from ptssnn.export.nir_export import (
    FRAME_DT,
    build_nir_graph,
    export_nir,
    plif_to_nir_lif,
    run_nir_head,
    simulate_nir,
)
from ptssnn.export.onnx_export import ExportError, export_onnx, run_onnx

__all__ = [
    "FRAME_DT",
    "ExportError",
    "build_nir_graph",
    "export_nir",
    "export_onnx",
    "plif_to_nir_lif",
    "run_nir_head",
    "run_onnx",
    "simulate_nir",
]
