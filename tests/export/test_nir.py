"""NIR export: PLIF → LIF per target, chain graphs, host program, export-only rebuild."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from nir_heads import calibrated_model
from ptssnn.export import (
    FRAME_DT,
    TARGETS,
    ExportError,
    NIRExport,
    compare_with_model,
    export_nir,
    plif_to_nir_lif,
    run_export,
    simulate_nir,
)
from ptssnn.models import create_model
from ptssnn.snn.plif import PLIF, PLIFParameters, plif_multi_step_loop


def chain(node: object, size: int) -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([size])}), "lif": node,
               "output": nir.Output(output_type={"output": np.array([size])})},
        edges=[("input", "lif"), ("lif", "output")])


@pytest.mark.parametrize("decay_input", [True, False])
def test_lif_parameters_reproduce_the_plif_dynamics(decay_input: bool) -> None:
    plif = PLIF(init_tau=3.0, v_threshold=1.0, v_reset=-0.2, decay_input=decay_input)
    with torch.no_grad():
        plif.w.fill_(0.37)  # a τ whose dt/τ is not a round number
    q = torch.sigmoid(plif.w).item()
    node = plif_to_nir_lif(plif, 16)
    # τ is picked so that float32(dt)/τ is exactly the model's q.
    assert np.float32(FRAME_DT) / node.tau[0] == np.float32(torch.sigmoid(plif.w).item())
    np.testing.assert_allclose(node.tau, FRAME_DT / q, rtol=1e-6)
    np.testing.assert_allclose(node.r, 1.0 if decay_input else 1.0 / q, rtol=1e-6)
    np.testing.assert_array_equal(node.v_leak, np.float32(-0.2))
    np.testing.assert_array_equal(node.v_reset, np.float32(-0.2))
    current = torch.randn(200, 1, 16, generator=torch.Generator().manual_seed(0)) + 1.2
    spikes, _ = plif_multi_step_loop(current, torch.full((1, 16), -0.2), plif.w.detach(),
                                     plif.params)
    got = simulate_nir(chain(node, 16), current[:, 0], FRAME_DT)
    assert spikes.sum() > 100  # the test exercises firing and resets
    np.testing.assert_array_equal(got.numpy(), spikes[:, 0].numpy())


def test_simulator_fires_on_the_threshold_as_the_model_does() -> None:
    plif = PLIF(PLIFParameters(init_tau=2.0))  # q = 1/2 exactly
    current = torch.tensor([[[2.0]], [[0.5]]])  # H = 0 + (2 - 0)/2 = 1.0 = V_th
    model_spikes = plif(current)
    got = simulate_nir(chain(plif_to_nir_lif(plif, 1), 1), current[:, 0], FRAME_DT)
    assert model_spikes[0].item() == 1.0 and got[0, 0].item() == 1.0
    assert torch.equal(got, model_spikes[:, 0])


def test_segments_are_chains_with_standard_names_and_the_model_weights(tmp_path: Path) -> None:
    model = calibrated_model()
    report = export_nir(model, tmp_path, metadata={"recognizer": {"labels": list("abcd")}})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["labels"] == list("abcd") and manifest["dt"] == pytest.approx(FRAME_DT)
    modules = dict(model.named_modules())
    lifs = set()
    for name, file in manifest["segments"].items():
        graph = nir.read(str(tmp_path / file))
        kinds = {n: type(node).__name__ for n, node in graph.nodes.items()}
        assert [n for n, k in kinds.items() if k == "Input"] == ["input"], name
        assert [n for n, k in kinds.items() if k == "Output"] == ["output"], name
        targets = [dest for _, dest in graph.edges]
        assert len(targets) == len(set(targets)) == len(graph.nodes) - 1  # a chain
        assert float(graph.metadata["dt"]) == pytest.approx(FRAME_DT)
        for node_name, kind in kinds.items():
            path = graph.metadata["modules"].get(node_name)
            if kind == "LIF":
                lifs.add(path)
                q = torch.sigmoid(modules[path].w).item()
                np.testing.assert_allclose(graph.nodes[node_name].tau, FRAME_DT / q, rtol=1e-6)
            elif kind == "Affine" and path in modules:
                np.testing.assert_array_equal(graph.nodes[node_name].weight,
                                              modules[path].weight.detach().numpy())
                np.testing.assert_array_equal(graph.nodes[node_name].bias,
                                              modules[path].bias.detach().numpy())
    assert lifs == {n for n, m in modules.items() if isinstance(m, PLIF)} == set(report["lif"])
    # The calibration bias is an explicit input current: [u; b] → Affine [I I] → LIF.
    block = nir.read(str(tmp_path / "blocks.0.input.nir"))
    current = block.nodes["blocks_0_current"]
    eye = np.eye(64, dtype=np.float32)
    np.testing.assert_array_equal(current.weight, np.concatenate([eye, eye], 1))
    assert ("input", "blocks_0_current") in set(map(tuple, block.edges))
    ops = report["host_ops"]
    for op in ("standardise", "soft_saturation", "layer_norm", "temporal_shift",
               "prompt_attention", "layer_norm_residual", "mean_over_time"):
        assert op in ops


@pytest.mark.parametrize("target", TARGETS)
def test_time_base_per_target(target: str, tmp_path: Path) -> None:
    model = calibrated_model()
    report = export_nir(model, tmp_path, target=target, check=False)
    q = torch.sigmoid(model.blocks[0].neuron_in.w).item()
    node = nir.read(str(tmp_path / "blocks.0.input.nir")).nodes["blocks_0_neuron_in"]
    expected_dt = {"nir": FRAME_DT, "snntorch": 1e-4, "norse": 1e-3, "sinabs": FRAME_DT}[target]
    assert report["dt"] == pytest.approx(expected_dt)
    if target == "sinabs":  # τ in steps with exp(-1/τ) decay; membrane scaled by 1/q
        assert math.exp(-1.0 / float(node.tau[0])) == pytest.approx(1 - q, rel=1e-6)
        np.testing.assert_allclose(node.v_threshold, 1.0 / q, rtol=1e-6)
    else:
        np.testing.assert_allclose(node.tau, expected_dt / q, rtol=1e-6)
        np.testing.assert_array_equal(node.v_threshold, 1.0)
    assert export_nir(model, tmp_path / "dt", target="norse", dt=0.005,
                      check=False)["dt"] == 0.005


def test_export_alone_rebuilds_the_head_on_real_features(shared_data: Path,
                                                         tmp_path: Path) -> None:
    """Logits from the directory alone equal the model's within 1e-5, every spike equal."""
    from ptssnn.audio import load_audio
    from ptssnn.backbones import load_backbone

    torch.set_num_threads(1)
    backbone = load_backbone("fbank")
    clips = [shared_data / "casia" / "zhaoquanyin" / e / "210.flac"
             for e in ("angry", "fear", "neutral")]
    features = [backbone(torch.from_numpy(load_audio(c)))[0] for c in clips]
    for preset, target, overrides in (
            ("pts-snn", "nir", {}), ("pts-snn", "nir", {"calibration_context": "causal"}),
            ("pts-snn", "snntorch", {}), ("pts-snn", "norse", {}), ("pts-snn", "sinabs", {}),
            ("neuromorphic", "nir", {}), ("neuromorphic", "norse", {})):
        model = calibrated_model(preset, **overrides)
        directory = tmp_path / f"{preset}-{target}-{len(overrides)}"
        export_nir(model, directory, target=target, check=False)
        for x in features:
            result = compare_with_model(directory, model, x)
            assert result["spikes_equal"], (preset, target, overrides)
            assert result["spikes"] > 1000 and result["max_abs_diff"] <= 1e-5
        with torch.inference_mode():
            want = model(features[0][None])[0].numpy()
        np.testing.assert_allclose(run_export(directory, features[0]), want, atol=1e-5)


@pytest.mark.parametrize(("preset", "overrides", "folded_width"), [
    ("+standardise", {}, 80),
    ("vanilla-snn", {"input_layers": 3}, 240),
    ("+standardise", {"input_layers": 2}, 160),
])
def test_standardisation_and_layer_sum_fold_into_the_projection(
        preset: str, overrides: dict, folded_width: int, tmp_path: Path) -> None:
    model = calibrated_model(preset, **overrides)
    report = export_nir(model, tmp_path)
    assert "standardise" not in report["host_ops"] and "layer_sum" not in report["host_ops"]
    projection = nir.read(str(tmp_path / "projection.nir")).nodes["projection"]
    assert projection.weight.shape == (64, folded_width)
    assert report["spikes_equal"] and report["max_abs_diff"] <= 1e-5


def test_neuromorphic_preset_keeps_no_normalisation_on_the_host(tmp_path: Path) -> None:
    """Its batch norms fold into the Affines: Affine → LIF → Affine run as one graph."""
    model = calibrated_model("neuromorphic")
    report = export_nir(model, tmp_path)
    assert not {"layer_norm", "layer_norm_residual", "soft_saturation",
                "standardise"} & set(report["host_ops"])
    assert report["segments"]["blocks.0.mlp"] == ["Input", "Affine", "LIF", "Affine", "Output"]
    assert report["segments"]["calibration.key"] == ["Input", "Affine", "LIF", "Output"]
    scale, shift = model.blocks[0].norm1.affine()
    fc1 = nir.read(str(tmp_path / "blocks.0.mlp.nir")).nodes["blocks_0_fc1"]
    fc = model.blocks[0].fc1
    expected = scale[:, None] * fc.weight
    np.testing.assert_allclose(fc1.weight, expected.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fc1.bias, (scale * fc.bias + shift).detach().numpy(),
                               rtol=1e-6, atol=1e-6)
    assert report["spikes_equal"] and report["max_abs_diff"] <= 1e-5


def test_other_variants_and_refusals(tmp_path: Path) -> None:
    for preset, overrides in (("+ssla", {}), ("pts-snn", {"input_layers": 3,
                                                          "pooling": "membrane"}),
                              ("pts-snn", {"decay_input": False}),
                              # fbank heads: tanh(ξ·x), no LayerNorm in the saturation
                              ("pts-snn", {"saturation_norm": False})):
        report = export_nir(calibrated_model(preset, **overrides), tmp_path / preset)
        assert report["max_abs_diff"] <= 1e-5, (preset, overrides)
    small = dict(input_dim=24, num_classes=3, width=32, block_hidden=40)
    with pytest.raises(ExportError, match="ONNX"):
        export_nir(create_model("ann", **small), tmp_path / "ann")
    with pytest.raises(ExportError, match="soft-reset"):
        export_nir(create_model("pts-snn", v_reset=None, **small), tmp_path / "soft")
    with pytest.raises(ExportError, match="norse"):
        export_nir(create_model("pts-snn", decay_input=False, **small), tmp_path / "n",
                   target="norse")
    with pytest.raises(ExportError, match="v_reset"):
        export_nir(create_model("pts-snn", v_reset=-0.2, **small), tmp_path / "s",
                   target="snntorch")
    with pytest.raises(ExportError, match="1e-4"):
        export_nir(create_model("pts-snn", **small), tmp_path / "t", target="snntorch", dt=0.02)
    with pytest.raises(ExportError, match="target"):
        export_nir(create_model("pts-snn", **small), tmp_path / "u", target="loihi")
    with pytest.raises(ExportError, match="manifest"):
        NIRExport(tmp_path)


def test_a_mean_std_readout_is_refused_not_exported_wrong(tmp_path) -> None:
    from ptssnn.export.onnx_export import ExportError
    from ptssnn.models import create_model

    model = create_model("pts-snn", 16, 3, width=16, block_hidden=16, readout="mean_std")
    with pytest.raises(ExportError, match="mean read-out"):
        export_nir(model, tmp_path / "head", check=False)
