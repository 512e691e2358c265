"""``ptssnn demo``: a synthetic emotional-prosody corpus and the pipeline run on it."""

from __future__ import annotations

from ptssnn.demo.runner import run_demo, synthetic_task
from ptssnn.demo.synthetic import CLASSES, SPEAKERS, generate_corpus, synthesise_clip

__all__ = ["CLASSES", "SPEAKERS", "generate_corpus", "run_demo", "synthesise_clip",
           "synthetic_task"]
