"""ONNX export of the whole head: onnxruntime equals PyTorch, dynamic batch and time axes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ptssnn.export import export_onnx, run_onnx
from ptssnn.models import create_model


def calibrated_model(**overrides: object) -> torch.nn.Module:
    """A small pts-snn head whose calibration bias is not zero (a fresh one starts at zero)."""
    model = create_model(
        "pts-snn", input_dim=80, num_classes=4, width=64, block_hidden=96, **overrides
    )
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        projection = model.calibration.projection
        projection.weight.copy_(torch.randn(projection.weight.shape, generator=generator) * 0.3)
        projection.bias.copy_(torch.randn(projection.bias.shape, generator=generator) * 0.3)
    # Trained heads standardise their input with the training split's moments.
    shape = model.input_mean.shape
    model.set_input_statistics(torch.randn(shape, generator=generator),
                               torch.rand(shape, generator=generator) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def casia_fbank(shared_data: Path) -> list[torch.Tensor]:
    """fbank features [T, 80] of six real CASIA clips of different lengths."""
    from ptssnn.audio import load_audio
    from ptssnn.backbones import load_backbone

    torch.set_num_threads(1)
    backbone = load_backbone("fbank")
    clips = [
        shared_data / "casia" / s / e / "201.flac"
        for s in ("wangzhe", "liuchanhg")
        for e in ("angry", "happy", "sad")
    ]
    return [backbone(torch.from_numpy(load_audio(c)))[0] for c in clips]


def pad(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(f.shape[0] for f in features)
    x = torch.zeros(len(features), longest, features[0].shape[1])
    mask = torch.zeros(len(features), longest, dtype=torch.bool)
    for i, f in enumerate(features):
        x[i, : f.shape[0]], mask[i, : f.shape[0]] = f, True
    return x, mask


def test_onnx_equals_pytorch_on_real_features(
    casia_fbank: list[torch.Tensor], tmp_path: Path
) -> None:
    model = calibrated_model()
    path = tmp_path / "head.onnx"
    report = export_onnx(model, path, metadata={"recognizer": {"labels": ["a", "b", "c", "d"]}})
    assert report["max_abs_diff"] <= 1e-4
    lengths = [f.shape[0] for f in casia_fbank]
    assert len(set(lengths)) > 1  # real clips: different lengths, so padding is exercised
    # Whole padded batch, a single clip, and a different batch size: one graph for all.
    for batch in (casia_fbank, casia_fbank[:1], casia_fbank[2:5]):
        x, mask = pad(batch)
        with torch.inference_mode():
            expected = model(x, mask).numpy()
        got = run_onnx(path, x.numpy(), mask.numpy())
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # Padding does not leak: a clip alone and inside the padded batch give the same logits.
    x, mask = pad(casia_fbank)
    alone = run_onnx(path, casia_fbank[0][None].numpy(), np.ones((1, lengths[0]), bool))
    np.testing.assert_allclose(run_onnx(path, x.numpy(), mask.numpy())[0], alone[0], atol=1e-5)


def test_graph_has_dynamic_axes_a_loop_and_metadata(tmp_path: Path) -> None:
    model = calibrated_model()
    path = tmp_path / "head.onnx"
    export_onnx(model, path, metadata={"recognizer": {"labels": ["a", "b", "c", "d"]}})
    proto = onnx.load(str(path))
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in proto.graph.input
    }
    assert dims["features"] == ["batch", "time", 80]
    assert dims["mask"] == ["batch", "time"]
    # The PLIF recurrence is one Loop per neuron layer, not an unrolled chain of steps.
    loops = [n for n in proto.graph.node if n.op_type == "Loop"]
    plif_layers = sum(type(m).__name__ == "PLIF" for m in model.modules())
    assert len(loops) == plif_layers
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["ptssnn"])["recognizer"]["labels"] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("vanilla-snn", {}),
        ("+ssla", {}),
        ("ann", {}),
        ("pts-snn", {"input_layers": 3, "pooling": "membrane"}),
        ("pts-snn", {"calibration_context": "causal", "decay_input": False}),
        ("pts-snn", {"v_reset": None}),
        ("pts-snn", {"saturation_norm": False}),  # the fbank heads' saturation
    ],
)
def test_every_variant_exports_exactly(preset: str, overrides: dict, tmp_path: Path) -> None:
    model = create_model(
        preset, input_dim=24, num_classes=3, width=32, block_hidden=40, **overrides
    )
    report = export_onnx(model, tmp_path / "m.onnx")  # checks two batch sizes and lengths
    assert report["max_abs_diff"] <= 1e-4
    layers = overrides.get("input_layers", 1)
    assert report["inputs"]["features"][0] == "batch"
    assert len(report["inputs"]["features"]) == (4 if layers > 1 else 3)


def test_export_switches_only_the_models_own_layers(tmp_path: Path) -> None:
    """The script backend is chosen on the model's layers, restored after export; no module
    attribute anywhere is rebound (the old export swapped names across ``sys.modules``)."""
    from ptssnn.snn import PLIF, plif

    before = plif.plif_multi_step
    model = create_model("pts-snn", input_dim=24, num_classes=3, width=32, block_hidden=40)
    export_onnx(model, tmp_path / "m.onnx", check=False)
    assert plif.plif_multi_step is before
    backends = {m.backend for m in model.modules() if isinstance(m, PLIF)}
    assert backends == {model.config.plif_backend} == {"compiled"}


def test_check_inputs_follow_the_heads_input_moments() -> None:
    # A whisper-like head: some channels' training std is tiny. Raw N(0, 1) check inputs
    # would be tens of standard deviations out for them (spike flips between runtimes); the
    # check draws features from the head's own moments instead.
    from ptssnn.export.onnx_export import example_inputs

    model = create_model("pts-snn", input_dim=16, num_classes=3, input_layers=2, width=32,
                         block_hidden=48)
    mean = torch.tensor([[5.0] * 16, [-3.0] * 16])
    std = torch.tensor([[0.01] * 16, [2.0] * 16])
    model.set_input_statistics(mean, std)
    features, mask = example_inputs(model, batch=3, frames=400, seed=1)
    assert features.shape == (3, 2, 400, 16) and mask.shape == (3, 400)
    z = (features - mean[None, :, None, :]) / std[None, :, None, :]
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1.0) < 0.05
    raw = create_model("vanilla-snn", input_dim=16, num_classes=3, width=32, block_hidden=48)
    features, _ = example_inputs(raw, batch=2, frames=200, seed=1)
    assert abs(float(features.std()) - 1.0) < 0.05  # raw-feature heads: N(0, 1) as before
