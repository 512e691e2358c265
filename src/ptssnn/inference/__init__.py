"""Using a trained model: prediction on files and waveforms, long recordings, streaming.

``EmotionRecognizer.load(MODEL_DIR)`` rebuilds the backbone named in the model directory
and the trained spiking head; ``predict`` / ``predict_file`` return a :class:`Prediction`
(label, probabilities, per-window segments, timings) and ``stream()`` a
:class:`StreamingSession` with a running label per chunk.
"""

from __future__ import annotations

from ptssnn.inference.recognizer import EmotionRecognizer
from ptssnn.inference.results import Prediction, SegmentPrediction, StreamUpdate, Timings
from ptssnn.inference.streaming import StreamingSession
from ptssnn.inference.windows import plan_windows
from ptssnn.models.card import CARD_KEY, ModelCard, save_recognizer

__all__ = [
    "CARD_KEY",
    "EmotionRecognizer",
    "ModelCard",
    "Prediction",
    "SegmentPrediction",
    "StreamUpdate",
    "StreamingSession",
    "Timings",
    "plan_windows",
    "save_recognizer",
]
