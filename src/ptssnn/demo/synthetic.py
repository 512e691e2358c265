"""A small SYNTHETIC emotional-prosody corpus, generated on the fly for ``ptssnn demo``.

Each clip is a voiced "utterance": a harmonic tone (a glottal-like source with a per-speaker
spectral roll-off) cut into syllables, whose prosody follows the class:

=========  ==========  ===============  ===========  ===========  ==========
class      pitch       contour          energy       tempo        jitter
=========  ==========  ===============  ===========  ===========  ==========
angry      high        falling, steep   loud         fast         strong
happy      high        rising, lively   fairly loud  fast         medium
neutral    speaker's   flat             medium       medium       small
sad        low         slowly falling   soft         slow         small, +breath
=========  ==========  ===============  ===========  ===========  ==========

and every speaker has its own base pitch, timbre (harmonic roll-off), speaking rate and
loudness, so a speaker-independent split is a real test of generalisation. Per-clip random
variation and background noise keep the task from being trivial. Everything is labelled
SYNTHETIC: the data says nothing about real emotional speech.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000
CORPUS_NAME = "synthetic"
CLASSES = ("angry", "happy", "neutral", "sad")


@dataclass(frozen=True)
class Prosody:
    """Per-class prosody (multipliers relative to the speaker's own values)."""

    pitch: float  # × speaker base f0
    slope: float  # octaves over the utterance
    swing: float  # depth of the pitch wobble, octaves
    energy_db: float  # level relative to the speaker, dB
    tempo: float  # × speaker syllable rate
    jitter: float  # relative cycle-to-cycle pitch noise
    breath: float  # noise-to-voice ratio


PROSODY = {
    "angry": Prosody(1.35, -0.45, 0.10, 6.0, 1.35, 0.030, 0.05),
    "happy": Prosody(1.40, 0.35, 0.25, 3.0, 1.25, 0.015, 0.04),
    "neutral": Prosody(1.00, -0.05, 0.05, 0.0, 1.00, 0.005, 0.04),
    "sad": Prosody(0.85, -0.20, 0.04, -7.0, 0.70, 0.006, 0.20),
}


@dataclass(frozen=True)
class Speaker:
    """A synthetic voice."""

    name: str
    f0: float  # Hz
    rolloff: float  # harmonic amplitude ∝ k^-rolloff
    rate: float  # syllables per second
    level_db: float  # loudness offset, dB


SPEAKERS = (
    Speaker("spk1", 105.0, 1.1, 3.6, 0.0),
    Speaker("spk2", 185.0, 1.5, 4.2, -2.0),
    Speaker("spk3", 130.0, 0.9, 3.2, 1.5),
    Speaker("spk4", 225.0, 1.3, 3.9, -1.0),
)


def synthesise_clip(speaker: Speaker, label: str, rng: np.random.Generator) -> np.ndarray:
    """One clip of ``speaker`` in class ``label``.

    Args:
        speaker: The voice.
        label: One of :data:`CLASSES`.
        rng: Per-clip randomness.

    Returns:
        ``[N]`` float32 in [-1, 1] at 16 kHz, 1.0–1.8 s.
    """
    p = PROSODY[label]
    duration = rng.uniform(1.0, 1.8) / max(0.8, p.tempo * rng.uniform(0.9, 1.1)) ** 0.3
    n = int(duration * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    u = t / duration
    base = speaker.f0 * p.pitch * rng.uniform(0.92, 1.08)
    wobble_rate = rng.uniform(1.5, 3.5)
    octaves = (p.slope * rng.uniform(0.7, 1.3) * u
               + p.swing * np.sin(2 * np.pi * wobble_rate * t + rng.uniform(0, 2 * np.pi)))
    f0 = base * 2.0 ** octaves
    # Jitter: smoothed random pitch perturbation.
    noise = rng.standard_normal(n // 80 + 2)
    f0 = f0 * (1 + p.jitter * np.interp(np.arange(n) / 80, np.arange(noise.size), noise))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = np.zeros(n)
    for k in range(1, 16):
        harmonic = k * f0
        amplitude = k ** -(speaker.rolloff * rng.uniform(0.9, 1.1))
        voice += np.where(harmonic < SAMPLE_RATE / 2 - 500, amplitude * np.sin(k * phase), 0.0)
    # Syllables: raised-cosine envelope at the speaking rate, with short pauses.
    rate = speaker.rate * p.tempo * rng.uniform(0.9, 1.1)
    syllable = 0.5 * (1 - np.cos(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    envelope = syllable ** 1.5 * np.clip(np.minimum(t, duration - t) / 0.05, 0, 1)
    breath = rng.standard_normal(n) * p.breath
    signal = (voice / (np.abs(voice).max() + 1e-9) + breath) * envelope
    level = 10 ** ((speaker.level_db + p.energy_db + rng.uniform(-1.5, 1.5) - 12.0) / 20)
    signal = signal * level + rng.standard_normal(n) * 10 ** (-50 / 20)
    return np.clip(signal, -1, 1).astype(np.float32)


@dataclass(frozen=True)
class SyntheticClip:
    """A generated clip on disk (the fields an ``Utterance`` needs)."""

    id: str
    path: Path
    speaker: str
    label: str
    duration: float


def generate_corpus(root: str | Path, *, clips_per_class: int = 16, seed: int = 0
                    ) -> list[SyntheticClip]:
    """Write the corpus as 16 kHz WAV files ``<root>/<speaker>/<label>/<n>.wav``.

    Deterministic for a seed; files that already exist with the same content are rewritten
    identically (so the feature cache, keyed by content, still hits).

    Args:
        root: Output folder.
        clips_per_class: Clips per speaker × class.
        seed: Generator seed.

    Returns:
        The clips, sorted by id.
    """
    root = Path(root)
    clips = []
    for s_index, speaker in enumerate(SPEAKERS):
        for c_index, label in enumerate(CLASSES):
            for n in range(clips_per_class):
                rng = np.random.default_rng([seed, s_index, c_index, n])
                audio = synthesise_clip(speaker, label, rng)
                path = root / speaker.name / label / f"{n:03d}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
                clips.append(SyntheticClip(
                    id=f"{CORPUS_NAME}-{speaker.name}-{label}-{n:03d}",
                    path=path,
                    speaker=speaker.name,
                    label=label,
                    duration=audio.size / SAMPLE_RATE,
                ))
    return sorted(clips, key=lambda c: c.id)
