"""A weight-free baseline: 80-bin log-Mel filterbank energies at 50 frames/s."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ptssnn.backbones.base import Backbone
from ptssnn.backbones.log_mel import MelPowerSpectrogram, MelSettings

IMPLEMENTATION_VERSION = 1


class FbankBackbone(Backbone):
    """80 log-Mel energies per 20 ms frame: ``[1, T, 80]``.

    The Mel power spectrum is Whisper's (25 ms periodic Hann window, hop 10 ms, Slaney Mel
    filters 0–8 kHz); pairs of 10 ms frames are averaged in the power domain (an odd last
    frame stands alone), then the natural log is taken, floored at 1e-10. So ``T`` equals
    the Whisper encoders' ``T`` for the same audio, and ``L = 1``. No normalisation: the head
    normalises its input.
    """

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.settings = MelSettings(n_mels=n_mels)
        self.power = MelPowerSpectrogram(self.settings)
        self.name = "fbank" if n_mels == 80 else f"fbank-{n_mels}"
        self.num_hidden_states = 1
        self.hidden_size = n_mels
        self.freeze()

    def num_frames(self, num_samples: int) -> int:
        return (num_samples // self.settings.hop_length + 1) // 2

    def hidden_states(self, audio: torch.Tensor) -> torch.Tensor:
        power = self.power(audio)  # [n_mels, F] at 100 frames/s
        # Average pairs of frames; ceil_mode keeps an odd last frame, averaged over itself only.
        pooled = F.avg_pool1d(power.unsqueeze(0), kernel_size=2, stride=2, ceil_mode=True)[0]
        return torch.clamp(pooled, min=1e-10).log().transpose(0, 1).unsqueeze(0)

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "fbank",
            "implementation": IMPLEMENTATION_VERSION,
            "front_end": {
                **self.settings.to_dict(),
                "window": "hann-periodic",
                "center": "reflect",
                "pool": "mean of 2 power frames",
                "log": "ln(max(x,1e-10))",
            },
        }

    def macs(self, num_samples: int) -> int:
        frames = num_samples // self.settings.hop_length
        bins = self.settings.n_fft // 2 + 1
        # A radix-2-equivalent FFT costs about N log2 N / 2 complex MACs; the Mel projection
        # bins × n_mels per frame.
        fft = int(self.settings.n_fft * max(1, self.settings.n_fft.bit_length()) // 2)
        return frames * (fft + bins * self.settings.n_mels)
