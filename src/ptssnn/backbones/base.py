"""The one interface every frozen speech backbone implements."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Backbone(nn.Module):
    """A frozen speech encoder: 16 kHz mono audio → hidden states of every layer.

    Subclasses set the attributes below in ``__init__``, implement :meth:`hidden_states`,
    :meth:`identity` and :meth:`macs`, and call :meth:`freeze` when built.

    Attributes:
        name: Registry name (``"whisper-base"``, ``"fbank"``, ``"hf:microsoft/wavlm-base"``...).
        num_hidden_states: ``L``, the number of hidden states returned (layers + 1 for
            transformers: index 0 is the input of the first block).
        hidden_size: ``D``, the feature width.
        frame_rate: Output frames per second (50).
        sample_rate: Expected input sample rate in Hz (16000).
    """

    name: str
    num_hidden_states: int
    hidden_size: int
    frame_rate: int = 50
    sample_rate: int = 16000

    def freeze(self) -> Backbone:
        """Put the module in eval mode and stop gradients to every parameter."""
        self.eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Backbone:
        # Frozen: dropout and friends stay off even if a caller flips the parent to train().
        return super().train(False)

    def num_frames(self, num_samples: int) -> int:
        """Output frames ``T`` for an input of ``num_samples`` samples."""
        raise NotImplementedError

    def hidden_states(self, audio: torch.Tensor) -> torch.Tensor:
        """Args: audio ``[N]`` float32 at 16 kHz. Returns: ``[L, T, D]`` float32."""
        raise NotImplementedError

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Hidden states of every layer.

        Args:
            audio: ``[N]`` float tensor, 16 kHz mono in [-1, 1].

        Returns:
            ``[L, T, D]`` float32 with ``T = num_frames(N)`` at 50 frames/s.
        """
        if audio.dim() != 1:
            raise ValueError(f"a backbone takes 1-D audio, got shape {tuple(audio.shape)}")
        with torch.inference_mode():
            return self.hidden_states(audio.float())

    def identity(self) -> dict[str, Any]:
        """Everything that decides the output (enters the feature cache key); JSON-able."""
        raise NotImplementedError

    def macs(self, num_samples: int) -> int:
        """Multiply-accumulates of one forward pass on ``num_samples`` samples."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, L={self.num_hidden_states}, D={self.hidden_size}, "
            f"frame_rate={self.frame_rate}"
        )
