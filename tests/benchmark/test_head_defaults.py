"""Backbone-aware head defaults: log-Mel features keep their level through the saturation."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptssnn.backbones import head_defaults, is_spectral
from ptssnn.benchmark import BenchmarkSettings
from ptssnn.benchmark.manifest import differences
from ptssnn.models import HeadSpec
from ptssnn.models.ptssnn import SoftSaturation


@pytest.mark.parametrize(("name", "spectral"), [
    ("fbank", True), ("fbank-40", True), ("whisper-base", False), ("whisper-tiny.en", False),
    ("hf:microsoft/wavlm-base", False), ("whisper-ct2:/models/fbank-like", False),
])
def test_only_filterbank_backbones_are_spectral(name: str, spectral: bool) -> None:
    assert is_spectral(name) is spectral
    assert head_defaults(name) == ({"saturation_norm": False} if spectral else {})


def test_the_benchmark_builds_heads_with_the_backbone_defaults_under_the_users_options(
        tmp_path: Path) -> None:
    fbank = BenchmarkSettings(backbone="fbank", out=tmp_path)
    assert fbank.head_options == {"saturation_norm": False}
    head = HeadSpec("pts-snn", {"seed": 0, **fbank.head_options})(80, 4)
    assert isinstance(head.saturation, SoftSaturation)
    assert not any(type(m).__name__ == "LayerNorm" for m in head.saturation.modules())
    # The user's option wins; encoder backbones keep the paper's LayerNorm.
    forced = BenchmarkSettings(backbone="fbank", out=tmp_path,
                               model_overrides={"saturation_norm": True})
    assert forced.head_options == {"saturation_norm": True}
    whisper = BenchmarkSettings(backbone="whisper-base", out=tmp_path)
    assert whisper.head_options == {}
    head = HeadSpec("pts-snn", {"seed": 0, **whisper.head_options})(512, 4)
    assert any(type(m).__name__ == "LayerNorm" for m in head.saturation.modules())


def test_run_records_resume_as_before_for_encoders_and_not_for_fbank(tmp_path: Path) -> None:
    def record(backbone: str, with_defaults: bool) -> dict:
        settings = BenchmarkSettings(backbone=backbone, out=tmp_path).result_settings()
        if not with_defaults:  # a run folder made before head defaults existed
            del settings["head_defaults"]
        return {**settings, "corpora": {}}

    assert differences(record("whisper-base", False), record("whisper-base", True)) == []
    # Its fbank folds were trained with the LayerNorm: they must not be reused.
    assert differences(record("fbank", False), record("fbank", True)) == [
        "head_defaults.saturation_norm: (unset) → False"]
