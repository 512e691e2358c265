"""Streaming: chunked backbone with left context, carried spiking state, running label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ptssnn.errors import NonFiniteAudioError
from ptssnn.inference import EmotionRecognizer
from speechlike import voiced


@pytest.fixture(scope="module")
def recognizer(tiny_model_dir: Path) -> EmotionRecognizer:
    torch.set_num_threads(1)
    return EmotionRecognizer.load(tiny_model_dir)


def test_chunk_must_be_whole_frames(recognizer: EmotionRecognizer) -> None:
    with pytest.raises(ValueError, match="multiple of one frame"):
        recognizer.stream(chunk_s=0.013)
    with pytest.raises(ValueError):
        recognizer.stream(chunk_s=0.5, left_context_s=-1.0)
    session = recognizer.stream(chunk_s=0.5, left_context_s=1.01)
    assert session.left_context_s == pytest.approx(1.0)  # floored to whole frames


def record_head_input(recognizer: EmotionRecognizer, monkeypatch: pytest.MonkeyPatch
                      ) -> list[torch.Tensor]:
    """The frames each ``stream_step`` call hands the head, in order (filled as it runs)."""
    received: list[torch.Tensor] = []
    original = recognizer.model.stream_step

    def spy(chunk: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        received.append(chunk[0].clone())
        return original(chunk, state)

    monkeypatch.setattr(recognizer.model, "stream_step", spy)
    return received


def test_head_receives_the_offline_frames_except_at_chunk_edges(
    recognizer: EmotionRecognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With left context, every chunk's frames equal the offline frames (fbank: all but the
    last frame of each chunk, whose analysis window reaches past the chunk's end)."""
    wave = voiced(3.1, seed=4)
    offline = recognizer.features(wave).float()  # [T, D]
    received = record_head_input(recognizer, monkeypatch)
    updates = recognizer.stream(chunk_s=0.4, left_context_s=0.6).run(wave, 16000)
    streamed = torch.cat(received)
    assert streamed.shape == offline.shape  # no frame lost or repeated
    assert len(updates) == len(received) == 8  # 7 × 0.4 s + the 0.3 s tail
    ends = np.cumsum([c.shape[0] for c in received]) - 1
    interior = np.setdiff1d(np.arange(offline.shape[0]), ends)
    torch.testing.assert_close(streamed[interior], offline[interior], atol=1e-4, rtol=1e-4)
    assert (streamed[ends[:-1]] - offline[ends[:-1]]).abs().max() > 1e-4  # the known edge effect


def test_lookahead_makes_chunk_edges_exact(
    recognizer: EmotionRecognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fbank frames need 12.5 ms past their end: a 0.1 s look-ahead removes the edge effect."""
    wave = voiced(2.5, seed=8)
    offline = recognizer.features(wave).float()
    received = record_head_input(recognizer, monkeypatch)
    session = recognizer.stream(chunk_s=0.4, left_context_s=0.6, lookahead_s=0.1)
    assert session.lookahead_s == pytest.approx(0.1)
    updates = session.push(wave[:16000])  # 1 s in: two chunks, the third waits for look-ahead
    assert [round(u.end_s, 2) for u in updates] == [0.4, 0.8]
    updates += session.push(wave[16000:])
    updates.append(session.flush())
    torch.testing.assert_close(torch.cat(received), offline, atol=1e-4, rtol=1e-4)


def test_single_chunk_stream_equals_offline(recognizer: EmotionRecognizer) -> None:
    wave = voiced(1.6, seed=9)
    updates = recognizer.stream(chunk_s=2.0).run(wave, 16000)
    assert len(updates) == 1  # everything arrives in the flushed last chunk
    offline = recognizer.predict(wave, 16000)
    assert updates[0].probabilities == pytest.approx(offline.probabilities, abs=1e-5)
    assert updates[0].end_s == pytest.approx(1.6)


def test_running_label_resampling_and_latency(recognizer: EmotionRecognizer) -> None:
    import soxr

    wave = soxr.resample(voiced(2.0, seed=2), 16000, 44100).astype(np.float32)
    session = recognizer.stream(chunk_s=0.5, left_context_s=1.0)
    updates = []
    for start in range(0, wave.size, 3001):  # odd block sizes, as from a sound card
        updates += session.push(wave[start : start + 3001], 44100)
    last = session.flush()
    if last is not None:
        updates.append(last)
    assert [round(u.end_s, 2) for u in updates[:4]] == [0.5, 1.0, 1.5, 2.0]
    assert session.label == updates[-1].label
    for update in updates:
        assert sum(update.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert update.latency_ms >= update.backbone_ms > 0
        assert update.real_time_factor > 0
        assert set(update.to_dict()) >= {"label", "latency_ms", "real_time_factor"}
    with pytest.raises(ValueError, match="cannot change"):
        session.push(wave[:1000], 48000)
    with pytest.raises(NonFiniteAudioError):
        recognizer.stream().push(np.full(100, np.nan, np.float32))


@pytest.fixture(scope="module")
def pooled(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EmotionRecognizer:
    """The tiny model with a card saying the head reads frames averaged in groups of 4."""
    import dataclasses

    from ptssnn.inference import ModelCard, save_recognizer
    from ptssnn.models import load_pretrained

    model, metadata = load_pretrained(tiny_model_dir)
    card = ModelCard.from_metadata(metadata, tiny_model_dir)
    card = dataclasses.replace(card, pipeline=card.pipeline.replace(frame_pool=4))
    directory = save_recognizer(model, tmp_path_factory.mktemp("pooled"), card)
    return EmotionRecognizer.load(directory)


def test_frame_pooling_offline_and_streaming(
    pooled: EmotionRecognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ptssnn.features import FeaturePipeline

    assert pooled.card.frame_pool == 4 and pooled.card.head_dt == pytest.approx(0.08)
    frames = torch.arange(2 * 10 * 3, dtype=torch.float32).reshape(2, 10, 3)
    groups = FeaturePipeline(frame_pool=4, dtype="float32").pool(frames)
    assert groups.shape == (2, 3, 3)
    torch.testing.assert_close(groups[:, 0], frames[:, :4].mean(1))
    torch.testing.assert_close(groups[:, 2], frames[:, 8:].mean(1))  # short last group
    wave = voiced(2.3, seed=6)  # 115 frames: 28 groups of 4 and one of 3
    features = pooled.features(wave)  # [T, D], float16 (the dtype policy)
    with torch.inference_mode():
        logits = pooled.model(pooled.pipeline.pool(features).float()[None])
    expected = torch.softmax(logits, -1)[0].tolist()
    assert list(pooled.predict(wave, 16000).probabilities.values()) == pytest.approx(
        expected, abs=1e-6
    )
    # Streaming hands the head whole groups only, the short one at the end: 29 steps in all.
    steps: list[int] = []
    original = pooled.model.stream_step

    def spy(chunk: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        steps.append(chunk.shape[1])
        return original(chunk, state)

    monkeypatch.setattr(pooled.model, "stream_step", spy)
    updates = pooled.stream(chunk_s=0.5, left_context_s=1.0).run(wave, 16000)
    assert sum(steps) == 29 and len(updates) == 5
    single = pooled.stream(chunk_s=3.0).run(wave, 16000)
    assert single[-1].probabilities == pytest.approx(
        dict(zip(pooled.labels, expected, strict=True)), abs=1e-5
    )
