"""stream_step: chunked inference against forward."""

from __future__ import annotations

import pytest
import torch

from ptssnn.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(width=32, block_hidden=48, attention_heads=4)
CHUNKINGS = [[23], [1] * 23, [5, 1, 8, 9], [2, 3, 4, 14]]


def _model(preset, **changes):
    model = create_model(preset, 16, 3, **SMALL, **changes).double().eval()
    if model.calibration is not None:  # a trained-looking, non-zero calibration
        torch.nn.init.normal_(model.calibration.projection.weight, std=0.5)
    return model


def _clip():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 23, 16, generator=g, dtype=torch.float64) * 2
    mask = torch.ones(2, 23, dtype=torch.bool)
    mask[1, 17:] = False
    return x, mask


def _stream(model, x, mask, sizes):
    state = model.init_stream_state(x.shape[0])
    start, outputs = 0, []
    for size in sizes:
        logits, state = model.stream_step(x[:, start:start + size], state,
                                          mask[:, start:start + size])
        outputs.append((start + size, logits))
        start += size
    return outputs


@pytest.mark.parametrize("preset", ["pts-snn", "ann", "+ssla", "+shift", "vanilla-snn"])
@pytest.mark.parametrize("sizes", CHUNKINGS)
def test_causal_stream_equals_forward_on_every_prefix(preset, sizes):
    model = _model(preset, calibration_context="causal")
    x, mask = _clip()
    with torch.no_grad():
        for end, logits in _stream(model, x, mask, sizes):
            torch.testing.assert_close(logits, model(x[:, :end], mask[:, :end]),
                                       rtol=1e-9, atol=1e-9)


def test_global_calibration_single_chunk_equals_forward_and_chunks_are_chunk_causal():
    model = _model("pts-snn")
    x, mask = _clip()
    with torch.no_grad():
        reference = model(x, mask)
        [(_, single)] = _stream(model, x, mask, [23])
        torch.testing.assert_close(single, reference, rtol=1e-9, atol=1e-9)
        # In chunks, early frames were calibrated before the whole clip was known: the
        # result differs from forward (documented), but the first chunk alone matches it.
        outputs = _stream(model, x, mask, [8, 15])
        torch.testing.assert_close(outputs[0][1], model(x[:, :8], mask[:, :8]),
                                   rtol=1e-9, atol=1e-9)
        assert not torch.allclose(outputs[1][1], reference)


def test_stream_state_is_not_mutated():
    model = _model("pts-snn", calibration_context="causal")
    x, mask = _clip()
    with torch.no_grad():
        state = model.init_stream_state(2)
        _, state = model.stream_step(x[:, :7], state, mask[:, :7])
        a, _ = model.stream_step(x[:, 7:12], state, mask[:, 7:12])
        b, _ = model.stream_step(x[:, 7:12], state, mask[:, 7:12])
    assert torch.equal(a, b)


def test_stream_with_layer_stack_and_no_mask():
    model = create_model("pts-snn", 16, 3, input_layers=2, calibration_context="causal",
                         **SMALL).eval()
    x = torch.randn(1, 2, 10, 16)
    with torch.no_grad():
        state = model.init_stream_state(1)
        _, state = model.stream_step(x[:, :, :4], state)
        logits, state = model.stream_step(x[:, :, 4:], state)
        torch.testing.assert_close(logits, model(x), rtol=1e-4, atol=1e-5)
    assert state["frames"] == 10


@pytest.mark.parametrize("pooling", ["spikes", "membrane"])
@pytest.mark.parametrize("sizes", [[23], [5, 1, 8, 9]])
def test_mean_std_readout_streams_like_forward(pooling, sizes):
    model = _model("pts-snn", calibration_context="causal", readout="mean_std",
                   pooling=pooling)
    x, mask = _clip()
    with torch.no_grad():
        for end, logits in _stream(model, x, mask, sizes):
            torch.testing.assert_close(logits, model(x[:, :end], mask[:, :end]),
                                       rtol=1e-7, atol=1e-7)
