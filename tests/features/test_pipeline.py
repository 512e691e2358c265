"""``FeaturePipeline``: the one layer grammar, the stages, the saved form, and the exact
parity of the training path (cache → pipeline) and the deployment path (audio → backbone →
pipeline) on a multi-layer backbone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from features.feature_helpers import Utt, write_speechlike
from ptssnn.features import (
    FeaturePipeline,
    FeaturePipelineError,
    FeatureStore,
    LayerSelection,
    LayerSelectionError,
    Moments,
    extract_features,
    pad_items,
)
from ptssnn.training import LabelledFeatures
from ptssnn.training.crossval import LayerViews


@pytest.mark.parametrize(
    ("text", "indices", "mean", "canonical"),
    [
        ("all", None, False, "0,1,2,3,4,5,6"),
        ("3", (3,), False, "3"),
        ("1,3,5", (1, 3, 5), False, "1,3,5"),
        ("2-4", (2, 3, 4), False, "2,3,4"),
        ("mean:2-4", (2, 3, 4), True, "mean:2,3,4"),
        ("mean:all", None, True, "mean:0,1,2,3,4,5,6"),
        ("-1", (-1,), False, "6"),
        (" Mean: 1, 6 ", (1, 6), True, "mean:1,6"),
    ],
)
def test_layer_selection_parse(
    text: str, indices: tuple[int, ...] | None, mean: bool, canonical: str
) -> None:
    spec = LayerSelection.parse(text)
    assert (spec.indices, spec.mean) == (indices, mean)
    assert spec.canonical(7) == canonical
    assert LayerSelection.parse(str(spec)) == spec


@pytest.mark.parametrize("text", ["", "x", "4-2", "mean:", "1,,a", "2.5"])
def test_layer_selection_rejects(text: str) -> None:
    with pytest.raises(LayerSelectionError):
        LayerSelection.parse(text)


def test_layer_selection_apply_tensor_and_array() -> None:
    states = torch.arange(7 * 3 * 2, dtype=torch.float32).reshape(7, 3, 2)
    torch.testing.assert_close(LayerSelection.parse("1,3").apply(states), states[[1, 3]])
    torch.testing.assert_close(
        LayerSelection.parse("mean:2-4").apply(states), states[2:5].mean(0, keepdim=True)
    )
    array = states.numpy().astype(np.float16)
    averaged = LayerSelection.parse("mean:0,6").apply(array)
    assert averaged.dtype == np.float16 and averaged.shape == (1, 3, 2)
    np.testing.assert_allclose(averaged[0], (array[0].astype(np.float32) + array[6]) / 2)
    assert LayerSelection.parse("all").num_selected(7) == 7
    assert LayerSelection.parse("mean:1-3").num_selected(7) == 1
    with pytest.raises(LayerSelectionError, match="7 hidden states"):
        LayerSelection.parse("7").apply(states)


def test_one_grammar_for_training_and_deployment() -> None:
    """Every form either side used to accept is accepted (and means the same) here."""
    assert LayerSelection.parse("mean") == LayerSelection.parse("mean:all")
    assert LayerSelection.parse("auto").auto and str(LayerSelection.parse("auto")) == "auto"
    for text in ("all", "mean", "mean:1-3", "3", "-1", "1,3", "2-4", "auto"):
        assert LayerSelection.parse(str(LayerSelection.parse(text))) == LayerSelection.parse(text)
    with pytest.raises(LayerSelectionError, match="resolved"):
        LayerSelection.parse("auto").apply(torch.zeros(3, 2, 2))


def table(layers: int = 3) -> LabelledFeatures:
    items = []
    for i, frames in enumerate([5, 9, 3, 7]):
        x = np.stack([np.full((frames, 2), 10 * k + i, dtype=np.float32) for k in range(layers)])
        items.append((f"u{i}", x, "b" if i % 2 else "a"))
    return LabelledFeatures.from_arrays(items, ["a", "b"])


def test_layer_selection_stage() -> None:
    t = table()
    assert t.num_layers == 3 and t.feature_dim == 2
    single = t.prepared(FeaturePipeline(layers="2"))
    assert single.features[1].shape == (9, 2) and float(single.features[1][0, 0]) == 21
    mean = t.prepared(FeaturePipeline(layers="mean"))
    assert float(mean.features[0][0, 0]) == pytest.approx(10.0)  # (0 + 10 + 20) / 3
    part = t.prepared(FeaturePipeline(layers="mean:1-2"))
    assert float(part.features[0][0, 0]) == pytest.approx(15.0)
    assert t.prepared(FeaturePipeline(layers="all")).features[1].shape == (3, 9, 2)
    two = t.prepared(FeaturePipeline(layers="0,-1"))
    assert two.features[0][:, 0, 0].tolist() == [0.0, 20.0]
    with pytest.raises(LayerSelectionError, match="3 hidden states"):
        t.prepared(FeaturePipeline(layers="5"))
    with pytest.raises(LayerSelectionError, match="resolved"):
        t.prepared(FeaturePipeline(layers="auto"))
    # A one-layer table ([T, D] items) is one hidden state.
    flat = t.prepared(FeaturePipeline(layers="0"))
    assert flat.prepared(FeaturePipeline(layers="0")).features[0].shape == (5, 2)


def test_pool_stage_averages_groups_and_keeps_the_tail() -> None:
    x = np.arange(7, dtype=np.float32).reshape(7, 1) * np.ones((1, 2), dtype=np.float32)
    t = LabelledFeatures.from_arrays([("u", x, "a")], ["a"], dtype=torch.float32)
    pooled = t.prepared(FeaturePipeline(layers="0", frame_pool=3)).features[0]
    assert pooled[:, 0].tolist() == [1.0, 4.0, 6.0]  # (0+1+2)/3, (3+4+5)/3, 6/1
    assert pooled.dtype == torch.float32  # the item's dtype is kept
    layered = table().prepared(FeaturePipeline(frame_pool=2))
    assert layered.features[1].shape == (3, 5, 2)  # 9 frames -> 5 groups, layers kept


def test_collate_pads_and_masks() -> None:
    t = table().prepared(FeaturePipeline(layers="0"))
    batch = t.batch([0, 2])
    assert batch.features.shape == (2, 5, 2) and batch.features.dtype == torch.float32
    assert batch.mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert float(batch.features[1, 3:].abs().sum()) == 0.0
    assert batch.labels.tolist() == [0, 0]
    full = table().batch([1, 3])
    assert full.features.shape == (2, 3, 9, 2)
    cropped = t.batch([1], crop_frames=4, generator=torch.Generator().manual_seed(1))
    assert cropped.features.shape == (1, 4, 2) and cropped.mask.all()
    x, mask = pad_items([torch.ones(2, 3, 4), torch.ones(2, 1, 4)])
    assert x.shape == (2, 2, 3, 4) and mask.sum(1).tolist() == [3, 1]


def test_moments_match_torch_over_all_frames() -> None:
    items = [torch.randn(2, t, 5) * 3 + 1 for t in (3, 7, 11)]
    moments = Moments.of(items)
    frames = torch.cat(items, dim=1)
    torch.testing.assert_close(moments.mean, frames.mean(1))
    torch.testing.assert_close(moments.std, frames.std(1, unbiased=False), atol=1e-5, rtol=1e-5)
    assert moments.mean.shape == (2, 5)
    assert bool((Moments.of([torch.ones(4, 3)]).std > 0).all())  # dead channel: no 1/0
    with pytest.raises(FeaturePipelineError):
        Moments.of([])


def test_saved_form_and_fingerprint() -> None:
    pipeline = FeaturePipeline(layers="mean:1-3", frame_pool=8, normalisation="speaker")
    data = pipeline.to_dict()
    assert data == {"version": 1, "layers": "mean:1-3", "frame_pool": 8, "dtype": "float16",
                    "normalisation": "speaker"}
    assert FeaturePipeline.from_dict(data) == pipeline
    assert FeaturePipeline.from_dict(data).fingerprint() == pipeline.fingerprint()
    assert len({pipeline.fingerprint(), pipeline.replace(frame_pool=4).fingerprint(),
                pipeline.replace(layers="2").fingerprint()}) == 3
    with pytest.raises(FeaturePipelineError, match="auto"):
        FeaturePipeline(layers="auto").to_dict()
    with pytest.raises(FeaturePipelineError, match="newer"):
        FeaturePipeline.from_dict({**data, "version": 99})
    with pytest.raises(FeaturePipelineError, match="unknown"):
        FeaturePipeline.from_dict({**data, "pool": 2})
    with pytest.raises(FeaturePipelineError, match="frame_pool"):
        FeaturePipeline(frame_pool=0)
    with pytest.raises(FeaturePipelineError, match="dtype"):
        FeaturePipeline(dtype="bfloat16")
    with pytest.raises(FeaturePipelineError, match="normalisation"):
        FeaturePipeline(normalisation="auto")
    with pytest.raises(LayerSelectionError):
        FeaturePipeline(layers="top")


def test_model_cards_of_version_1_are_read(tmp_path: Path) -> None:
    from ptssnn.inference import ModelCard

    old = {"recognizer": {"format_version": 1, "labels": ["a", "b"],
                          "backbone": {"name": "fbank"}, "layers": "0", "frame_pool": 4}}
    card = ModelCard.from_metadata(old, tmp_path)
    assert card.pipeline == FeaturePipeline(layers="0", frame_pool=4)
    again = ModelCard.from_metadata({"recognizer": card.to_metadata()}, tmp_path)
    assert again == card and again.to_metadata()["format_version"] == 2


# ---------------------------------------------------------------------- parity
PIPELINES = [
    FeaturePipeline(layers="all", frame_pool=1),
    FeaturePipeline(layers="1,3", frame_pool=4),
    FeaturePipeline(layers="mean:1-3", frame_pool=8),
    FeaturePipeline(layers="-1", frame_pool=3),
]


@pytest.fixture(scope="module")
def tiny_whisper() -> torch.nn.Module:
    from ptssnn.backbones import load_backbone

    torch.set_num_threads(1)
    return load_backbone("whisper-tiny.en")  # five hidden states


def recognizer_for(backbone: torch.nn.Module, pipeline: FeaturePipeline, directory: Path):
    from ptssnn.inference import EmotionRecognizer, ModelCard, save_recognizer
    from ptssnn.models import create_model

    torch.manual_seed(0)
    layers = pipeline.input_layers(backbone.num_hidden_states)
    model = create_model("pts-snn", backbone.hidden_size, 3, width=16, block_hidden=24,
                         attention_heads=4, num_prompts=2,
                         **({"input_layers": layers} if layers > 1 else {}))
    card = ModelCard(labels=("a", "b", "c"), backbone=backbone.name,
                     backbone_identity=backbone.identity(), pipeline=pipeline)
    save_recognizer(model, directory, card)
    return EmotionRecognizer.load(directory, backbone=backbone)


@dataclasses.dataclass(frozen=True)
class Labelled:
    id: str
    label: str


def head_inputs(recognizer, path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """What the head receives from ``predict_file`` and from a one-chunk stream."""
    offline: list[torch.Tensor] = []
    streamed: list[torch.Tensor] = []
    forward, step = recognizer.model.forward, recognizer.model.stream_step
    monkeypatch.setattr(recognizer.model, "forward",
                        lambda x, mask=None: offline.append(x.clone()) or forward(x, mask))
    recognizer.predict_file(path)
    monkeypatch.setattr(recognizer.model, "stream_step",
                        lambda x, state: streamed.append(x.clone()) or step(x, state))
    recognizer.stream(chunk_s=10.0).run(load(path), recognizer.sample_rate)
    assert len(offline) == 1 and len(streamed) == 1
    return offline[0], streamed[0]


def check_parity(backbone, path: Path, tmp_path: Path, monkeypatch) -> None:
    store = FeatureStore(tmp_path / "cache")
    utterance = Utt("clip", path)
    feature_set = extract_features([utterance], backbone, "all", store, progress=False)
    table = LabelledFeatures.from_feature_set(feature_set, [Labelled("clip", "a")],
                                              ("a", "b", "c"))
    views = LayerViews(table, speakers={"clip": "spk"})
    for number, pipeline in enumerate(PIPELINES):
        trained = views.view(pipeline).batch([0]).features  # the training path
        recognizer = recognizer_for(backbone, pipeline, tmp_path / f"model{number}")
        offline, streamed = head_inputs(recognizer, path, monkeypatch)
        monkeypatch.undo()
        assert offline.shape == trained.shape, pipeline
        assert torch.equal(offline, trained), pipeline  # identical, not merely close
        assert torch.equal(streamed, trained), pipeline
        # Speaker normalisation: the training table's per-speaker copy equals the pipeline
        # fed that speaker's moments (the hook speaker profiles use).
        speaker = pipeline.replace(normalisation="speaker")
        moments = Moments.of(list(table.features))
        x, _ = speaker.head_input([recognizer.hidden_states(recognizer.prepare_waveform(
            load(path), 16000))], moments)
        assert torch.equal(x, views.view(speaker).batch([0]).features), pipeline


def load(path: Path) -> np.ndarray:
    from ptssnn.audio import load_audio

    return load_audio(path)


def test_training_and_deployment_give_identical_head_input_synthetic(
    tiny_whisper: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_speechlike(tmp_path / "clip.wav", 2.3, seed=3)
    check_parity(tiny_whisper, path, tmp_path, monkeypatch)


def test_training_and_deployment_give_identical_head_input_real_clip(
    shared_data: Path, tiny_whisper: torch.nn.Module, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    clips = sorted((shared_data / "casia").rglob("*.flac"))[:1] or sorted(
        shared_data.rglob("*.flac"))[:1]
    if not clips:
        pytest.skip(f"no FLAC clip under {shared_data}")
    check_parity(tiny_whisper, clips[0], tmp_path, monkeypatch)
