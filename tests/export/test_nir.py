"""NIR export: PLIF → LIF mapping, graph read back with ``nir``, and an executed round trip."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from ptssnn.export import (
    FRAME_DT,
    ExportError,
    export_nir,
    plif_to_nir_lif,
    run_nir_head,
    simulate_nir,
)
from ptssnn.models import create_model
from ptssnn.snn.plif import PLIF, plif_multi_step_loop


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
        for module in model.modules():  # varied time constants, not all τ0 = 2
            if isinstance(module, PLIF):
                module.w.fill_(float(torch.randn((), generator=generator)))
    # Trained heads standardise their input with the training split's moments.
    shape = model.input_mean.shape
    model.set_input_statistics(torch.randn(shape, generator=generator),
                               torch.rand(shape, generator=generator) + 0.5)
    return model.eval()


@pytest.mark.parametrize("decay_input", [True, False])
def test_lif_parameters_reproduce_the_plif_dynamics(decay_input: bool) -> None:
    plif = PLIF(init_tau=3.0, v_threshold=1.0, v_reset=-0.2, decay_input=decay_input)
    node = plif_to_nir_lif(plif, 16)
    tau_steps = 1.0 / torch.sigmoid(plif.w).item()
    assert tau_steps == pytest.approx(3.0)
    np.testing.assert_allclose(node.tau, 3.0 * FRAME_DT, rtol=1e-6)
    np.testing.assert_allclose(node.r, 1.0 if decay_input else 3.0, rtol=1e-6)
    np.testing.assert_array_equal(node.v_leak, np.float32(-0.2))
    np.testing.assert_array_equal(node.v_reset, np.float32(-0.2))
    np.testing.assert_array_equal(node.v_threshold, 1.0)
    # Euler steps of the NIR ODE = the PLIF recursion, spike for spike.
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([16])}),
            "lif": node,
            "out": nir.Output(output_type={"output": np.array([16])}),
        },
        edges=[("in", "lif"), ("lif", "out")],
    )
    current = torch.randn(200, 1, 16, generator=torch.Generator().manual_seed(0)) + 1.2
    spikes, _ = plif_multi_step_loop(
        current, torch.full((1, 16), -0.2), plif.w.detach(), v_reset=-0.2, decay_input=decay_input
    )
    got = simulate_nir(graph, {"in": current[:, 0].numpy()}, FRAME_DT)["out"]
    assert spikes.sum() > 100  # the test exercises firing and resets
    np.testing.assert_array_equal(got, spikes[:, 0].numpy())


def test_graph_reads_back_with_its_parameters(tmp_path: Path) -> None:
    model = calibrated_model()
    path = tmp_path / "head.nir"
    report = export_nir(model, path, metadata={"recognizer": {"labels": ["a", "b", "c", "d"]}})
    graph = nir.read(str(path))
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    lifs = sorted(n for n, k in kinds.items() if k == "LIF")
    assert lifs == sorted(
        [
            "calibration.context_neuron",
            "calibration.attention.key_neuron",
            "calibration.attention.value_neuron",
            "blocks.0.neuron_in",
            "blocks.0.neuron_hidden",
            "blocks.1.neuron_in",
            "blocks.1.neuron_hidden",
            "output_neuron",
        ]
    )
    assert report["nodes"]["LIF"] == 8
    modules = dict(model.named_modules())
    for name in lifs:
        plif = modules[name]
        node = graph.nodes[name]
        tau_s = FRAME_DT / torch.sigmoid(plif.w).item()
        np.testing.assert_allclose(node.tau, tau_s, rtol=1e-5)
        assert node.tau.shape == node.v_threshold.shape == node.v_reset.shape
    for name in (
        "projection",
        "blocks.0.fc1",
        "blocks.1.fc2",
        "classifier",
        "calibration.attention.key",
    ):
        assert kinds[name] == "Affine"
        np.testing.assert_array_equal(
            graph.nodes[name].weight, modules[name].weight.detach().numpy()
        )
        np.testing.assert_array_equal(graph.nodes[name].bias, modules[name].bias.detach().numpy())
    edges = set(map(tuple, graph.edges))
    # The calibration bias is an extra input current of each block's input neurons.
    assert ("in:blocks.0.bias", "blocks.0.neuron_in") in edges
    assert ("in:blocks.0.neuron_in", "blocks.0.neuron_in") in edges
    assert ("blocks.0.neuron_hidden", "blocks.0.fc2") in edges
    assert ("output_neuron", "classifier") in edges
    assert float(graph.metadata["dt"]) == pytest.approx(FRAME_DT)
    ops = [graph.metadata["host_ops"][k]["op"] for k in sorted(graph.metadata["host_ops"])]
    for op in (
        "standardise",
        "soft_saturation",
        "layer_norm",
        "temporal_shift",
        "prompt_attention",
        "layer_norm_residual",
        "mean_over_time",
    ):
        assert op in ops
    labels = graph.metadata["labels"]
    assert (labels.decode() if isinstance(labels, bytes) else labels) == "a,b,c,d"


def test_executed_round_trip_on_real_features(shared_data: Path, tmp_path: Path) -> None:
    """The file, read back and run with the host operations, gives PyTorch's logits."""
    from ptssnn.audio import load_audio
    from ptssnn.backbones import load_backbone

    torch.set_num_threads(1)
    backbone = load_backbone("fbank")
    clips = [
        shared_data / "casia" / "zhaoquanyin" / e / "210.flac" for e in ("angry", "fear", "neutral")
    ]
    features = [backbone(torch.from_numpy(load_audio(c)))[0] for c in clips]
    for overrides in ({}, {"calibration_context": "causal"}):
        model = calibrated_model(**overrides)
        path = tmp_path / "head.nir"
        export_nir(model, path, check=False)
        graph = nir.read(str(path))
        for x in features:
            with torch.inference_mode():
                expected = model(x[None]).numpy()[0]
            np.testing.assert_allclose(run_nir_head(graph, model, x), expected, atol=1e-4)


def test_other_variants_and_refusals(tmp_path: Path) -> None:
    for preset, overrides in (
        ("vanilla-snn", {}),
        ("+ssla", {}),
        ("pts-snn", {"input_layers": 3, "pooling": "membrane"}),
    ):
        model = create_model(
            preset, input_dim=24, num_classes=3, width=32, block_hidden=40, **overrides
        )
        assert export_nir(model, tmp_path / f"{preset}.nir")["max_abs_diff"] <= 1e-4
    ann = create_model("ann", input_dim=24, num_classes=3, width=32, block_hidden=40)
    with pytest.raises(ExportError, match="ONNX"):
        export_nir(ann, tmp_path / "ann.nir")
    soft = create_model(
        "pts-snn", input_dim=24, num_classes=3, width=32, block_hidden=40, v_reset=None
    )
    with pytest.raises(ExportError, match="soft-reset"):
        export_nir(soft, tmp_path / "soft.nir")
