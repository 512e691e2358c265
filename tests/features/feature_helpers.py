"""Small audio folders for feature-cache tests (generated here; no research data needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf


@dataclass(frozen=True)
class Utt:
    """The part of ``ptssnn.corpora.Utterance`` that extraction uses."""

    id: str
    path: Path


def write_speechlike(path: Path, seconds: float, seed: int, sample_rate: int = 16000) -> Path:
    """A voiced, amplitude-modulated harmonic signal plus noise, 16-bit WAV."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 120 + 20 * seed % 80 + 30 * np.sin(2 * np.pi * 0.8 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(4 * t))
    audio = 0.15 * voice + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), sample_rate, subtype="PCM_16")
    return path


def make_utterances(root: Path, count: int, seconds: float = 0.6) -> list[Utt]:
    """``count`` WAV files of slightly different lengths under ``root``."""
    return [
        Utt(f"utt-{i:03d}", write_speechlike(root / f"utt-{i:03d}.wav", seconds + 0.05 * i, i))
        for i in range(count)
    ]


def build_casia_tree(root: Path, per_class: int = 2) -> list[str]:
    """A CASIA-layout tree ``<speaker>/<emotion>/<NNN>.wav``; returns the expected ids."""
    ids = []
    seed = 0
    for speaker in ("wangzhe", "liuchanhg"):
        for emotion in ("angry", "neutral", "sad"):
            for sentence in range(201, 201 + per_class):
                seed += 1
                write_speechlike(
                    root / speaker / emotion / f"{sentence}.wav", 0.5 + 0.03 * seed, seed
                )
                ids.append(f"casia-{sentence}-{speaker}-{emotion}")
    return sorted(ids)
