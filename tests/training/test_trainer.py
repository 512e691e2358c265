"""fit: learning, determinism, exact resume after an interruption, schedule, checkpoints."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn

from ptssnn.errors import CheckpointError
from ptssnn.training import LabelledFeatures, TrainConfig, TrainingError, fit, learning_rate
from ptssnn.training.checkpoint import flatten_optimizer_state, unflatten_optimizer_state
from ptssnn.training.config import TrainConfigError
from ptssnn.training.trainer import WeightAverage


class MeanPoolHead(nn.Module):
    """Small stand-in head with the model contract: (features [B,T,D], mask [B,T]) -> logits."""

    def __init__(self, input_dim: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, width)
        self.drop = nn.Dropout(0.2)  # exercises the global RNG, which resume must restore
        self.out = nn.Linear(width, num_classes)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.drop(torch.tanh(self.proj(features)))
        weights = mask.unsqueeze(-1).float()
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.out(pooled)


def make_table(n: int = 60, classes: int = 3, dim: int = 8, seed: int = 0) -> LabelledFeatures:
    """Items [T, D] whose mean carries the class, lengths 10..30 frames."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        label = i % classes
        frames = int(torch.randint(10, 31, (1,), generator=g))
        x = torch.randn(frames, dim, generator=g)
        x[:, label] += 1.5
        items.append((f"u{i:03d}", x.numpy(), f"c{label}"))
    return LabelledFeatures.from_arrays(items, [f"c{k}" for k in range(classes)])


def small_config(**changes) -> TrainConfig:
    base = dict(max_epochs=6, patience=10, batch_size=8, warmup_epochs=1, lr=5e-3,
                max_train_frames=20, time_mask_width=3, feature_mask_width=2, layers="0")
    base.update(changes)
    return TrainConfig(**base)


def strip(history):
    """Epoch records without wall-clock times."""
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def run(config: TrainConfig, **kwargs):
    table = make_table()
    train, val = table.subset(table.ids[:40]), table.subset(table.ids[40:])
    torch.manual_seed(config.seed)
    model = MeanPoolHead(8, 3)
    result = fit(model, train, val, config, **kwargs)
    return result, model


def test_fit_learns_and_selects_best_validation_epoch():
    result, _ = run(small_config())
    assert result.epochs_run == 6
    uas = [h["val_ua"] for h in result.history]
    assert result.best_validation.ua == max(uas)
    assert result.best_epoch == uas.index(max(uas)) + 1
    assert result.best_validation.ua > 0.8  # the class offset is easy to learn
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_same_seed_gives_identical_results_and_weights():
    first, model_a = run(small_config())
    second, model_b = run(small_config())
    assert strip(first.history) == strip(second.history)
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    third, _ = run(small_config(seed=1))
    assert strip(third.history) != strip(first.history)


@pytest.mark.parametrize("average", [0.0, 1.0])
@pytest.mark.parametrize("stop_after", [1, 3])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, stop_after, average):
    config = small_config(weight_average_epochs=average)
    reference, ref_model = run(config, checkpoint=tmp_path / "ref" / "state")

    class Interrupt(Exception):
        pass

    def hook(record):
        if record["epoch"] == stop_after:
            raise Interrupt

    stem = tmp_path / "run" / "state"
    with pytest.raises(Interrupt):
        run(config, checkpoint=stem, epoch_hook=hook)
    saved = json.loads(stem.with_suffix(".json").read_text())
    assert saved["epoch"] == stop_after
    # Scramble the global RNGs: resume must restore them, not rely on them.
    torch.manual_seed(12345)
    resumed, model = run(config, checkpoint=stem, resume=True)
    assert strip(resumed.history) == strip(reference.history)
    assert resumed.best_epoch == reference.best_epoch
    assert resumed.best_validation == reference.best_validation
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_resume_of_finished_run_returns_without_training(tmp_path):
    stem = tmp_path / "state"
    first, _ = run(small_config(max_epochs=2), checkpoint=stem)
    epochs = []
    again, _ = run(small_config(max_epochs=2), checkpoint=stem, resume=True,
                   epoch_hook=epochs.append)
    assert epochs == []
    assert again.best_validation == first.best_validation


def test_resume_with_other_config_is_refused(tmp_path):
    stem = tmp_path / "state"
    run(small_config(max_epochs=1), checkpoint=stem)
    with pytest.raises(CheckpointError, match="different training config"):
        run(small_config(max_epochs=1, lr=1e-3), checkpoint=stem, resume=True)


def test_torn_checkpoint_is_detected(tmp_path):
    stem = tmp_path / "state"
    run(small_config(max_epochs=1), checkpoint=stem)
    data = json.loads(stem.with_suffix(".json").read_text())
    data["token"] = "other"
    stem.with_suffix(".json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="different saves"):
        run(small_config(max_epochs=1), checkpoint=stem, resume=True)


def test_early_stopping_uses_patience():
    # lr tiny: validation UA stops improving after the first epoch or so.
    result, _ = run(small_config(max_epochs=30, patience=2, lr=1e-9, warmup_epochs=0))
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 2
    assert result.epochs_run < 30


def test_checkpoints_hold_no_pickle(tmp_path):
    stem = tmp_path / "state"
    run(small_config(max_epochs=1), checkpoint=stem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.safetensors"]
    json.loads(stem.with_suffix(".json").read_text())  # plain JSON


def test_empty_split_is_a_typed_error():
    table = make_table()
    with pytest.raises(TrainingError, match="validation"):
        fit(MeanPoolHead(8, 3), table, table.subset([]), small_config())


def test_learning_rate_warms_up_then_decays_to_zero():
    rates = [learning_rate(s, peak=1.0, warmup_steps=4, total_steps=20) for s in range(21)]
    assert rates[:4] == [0.25, 0.5, 0.75, 1.0]
    assert rates[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(rates[4:]))
    assert rates[20] == pytest.approx(0.0, abs=1e-12)
    assert rates[12] == pytest.approx(0.5)


def test_optimizer_state_roundtrip():
    model = MeanPoolHead(8, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    model(torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)).sum().backward()
    optimizer.step()
    tensors, meta = flatten_optimizer_state(optimizer.state_dict())
    json.dumps(meta)
    restored = unflatten_optimizer_state(tensors, json.loads(json.dumps(meta)))
    other = torch.optim.AdamW(model.parameters(), lr=1e-3)
    other.load_state_dict(restored)
    for key, values in optimizer.state_dict()["state"].items():
        for name, value in values.items():
            assert torch.equal(other.state_dict()["state"][key][name], value)
    assert other.param_groups[0]["betas"] == (0.9, 0.98)


def test_weight_average_tracks_an_exponential_average_and_swaps_back():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, horizon_steps=1e9)  # decay → 1: only the ramp acts
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(model)  # ramp: decay (1 + 1) / (10 + 1)
    assert torch.allclose(average.state["weight"], torch.full((1, 2), 1 - 2 / 11))
    average.swap(model)
    assert torch.allclose(model.weight, torch.full((1, 2), 1 - 2 / 11))
    average.swap(model)
    assert torch.equal(model.weight, torch.ones(1, 2))
    slow = WeightAverage(model, horizon_steps=4.0)
    assert slow.decay == pytest.approx(math.exp(-0.25))


def test_weight_average_is_what_fit_validates_and_keeps():
    config = small_config(weight_average_epochs=1.0)
    result, _ = run(config)
    assert result.best_validation.ua > 0.8
    plain, _ = run(small_config())
    assert strip(result.history) != strip(plain.history)
    # Without validation the kept weights are the last average, not the last raw step.
    table = make_table()
    torch.manual_seed(0)
    head = MeanPoolHead(8, 3)
    fit(head, table, None, config.replace(max_epochs=2))
    torch.manual_seed(0)
    raw = MeanPoolHead(8, 3)
    fit(raw, table, None, small_config(max_epochs=2))
    assert not torch.equal(head.proj.weight, raw.proj.weight)


def test_layer_mix_learns_at_its_own_rate():
    from ptssnn.training.trainer import _parameter_groups

    class Mixed(MeanPoolHead):
        def __init__(self) -> None:
            super().__init__(8, 3)
            self.layer_weights = nn.Parameter(torch.zeros(7))

    model = Mixed()
    groups = _parameter_groups(model, 0.1, body_lr_scale=0.5, layer_mix_lr_scale=30.0)
    (mix_group,) = [g for g in groups if any(p is model.layer_weights for p in g["params"])]
    assert mix_group["lr_scale"] == 30.0 and mix_group["weight_decay"] == 0.0
    assert len(mix_group["params"]) == 1
    assert {g["lr_scale"] for g in groups} == {0.5, 30.0}
    with pytest.raises(TrainConfigError, match="layer_mix_lr_scale"):
        small_config(layer_mix_lr_scale=0)


def test_bf16_precision_learns_keeps_float32_weights_and_evaluates_in_float32():
    result, model = run(small_config(precision="bf16"))
    assert result.best_validation.ua > 0.8  # same easy task as the fp32 run
    assert all(p.dtype == torch.float32 for p in model.parameters())
    reference, _ = run(small_config())
    # Mixed precision changes the rounding of every step, so the runs differ a little...
    assert strip(result.history) != strip(reference.history)
    # ...but not the learning: the final training losses are close.
    assert result.history[-1]["train_loss"] == pytest.approx(
        reference.history[-1]["train_loss"], abs=0.1)


def test_unknown_precision_is_a_config_error():
    with pytest.raises(TrainConfigError, match="precision"):
        TrainConfig(precision="fp16")
