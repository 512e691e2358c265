"""PTS-SNN: prompt-tuned temporal-shift spiking neural networks for speech emotion recognition.

The package is split along the s3prl line: frozen *backbones* turn audio into frame features
(``[L, T, D]`` hidden states at 50 frames/s), and the spiking *head* (``ptssnn.models``) turns
frame features plus a padding mask into emotion logits. Everything in between is cached.
"""

__version__ = "0.1.0"

from ptssnn.models import PTSSNN, PTSSNNConfig, create_model, list_presets  # noqa: E402

__all__ = ["PTSSNN", "PTSSNNConfig", "__version__", "create_model", "list_presets"]
