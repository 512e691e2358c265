"""The deployment metadata of a model directory (what a recogniser needs besides weights).

A model directory written by ``ptssnn train`` is self-contained::

    MODEL_DIR/
      model.safetensors      head weights (``ptssnn.models.save_pretrained``)
      config.json            head config + the metadata below (key ``"recognizer"``)
      training_summary.json  corpora, speakers, epochs, validation metrics (human-readable)

The ``"recognizer"`` metadata names the label order, the backbone (registry name, load
options and its identity, which includes a hash of its weights), the layer selection and
the audio/frame rates, and the :class:`ptssnn.features.FeaturePipeline` (layer selection,
frame pooling, dtype, normalisation), so that :class:`ptssnn.inference.EmotionRecognizer`
runs the exact feature pipeline the head was trained on. Version 1 cards (``layers`` and
``frame_pool`` only) are still read: their pipeline is the version-1 fields with the
default dtype policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptssnn.errors import CheckpointError, PtssnnError
from ptssnn.features.pipeline import FeaturePipeline
from ptssnn.jsonio import dumps as strict_json

#: Metadata key under which the recogniser card lives inside ``config.json``.
CARD_KEY = "recognizer"
#: Bumped when the card's meaning changes incompatibly (2: the feature pipeline).
CARD_VERSION = 2


@dataclass(frozen=True)
class ModelCard:
    """Everything beyond the head's weights that inference needs.

    Attributes:
        labels: Class names in logit order.
        backbone: Registry name for ``ptssnn.backbones.load_backbone``.
        backbone_options: Keyword options it was loaded with (e.g. ``{"padding": "30s"}``).
        backbone_identity: ``backbone.identity()`` at training time (weights hash, front-end
            settings); checked on load so that a head never meets features of other weights.
        pipeline: How hidden states become head input (resolved layer selection, frame
            pooling, dtype policy, normalisation), exactly as in training.
        sample_rate: Audio rate the backbone expects (Hz).
        frame_rate: Backbone frames per second.
        preset: Model preset the head was created from (informational).
    """

    labels: tuple[str, ...]
    backbone: str
    backbone_options: dict[str, Any] = field(default_factory=dict)
    backbone_identity: dict[str, Any] = field(default_factory=dict)
    pipeline: FeaturePipeline = field(default_factory=FeaturePipeline)
    sample_rate: int = 16000
    frame_rate: int = 50
    preset: str | None = None

    @property
    def layers(self) -> str:
        """The pipeline's layer selection."""
        return self.pipeline.layers

    @property
    def frame_pool(self) -> int:
        """The pipeline's frame pooling (4 → the head runs at 12.5 Hz)."""
        return self.pipeline.frame_pool

    @property
    def head_dt(self) -> float:
        """Seconds per head (spiking) time step: ``frame_pool / frame_rate``."""
        return self.frame_pool / self.frame_rate

    def to_metadata(self) -> dict[str, Any]:
        """The dictionary stored under :data:`CARD_KEY` in the model's metadata."""
        return {
            "format_version": CARD_VERSION,
            "labels": list(self.labels),
            "backbone": {
                "name": self.backbone,
                "options": dict(self.backbone_options),
                "identity": dict(self.backbone_identity),
            },
            "pipeline": self.pipeline.to_dict(),
            # Mirrors of the pipeline for readers of version-1 cards (e.g. NIR export).
            "layers": self.layers,
            "frame_pool": self.frame_pool,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "preset": self.preset,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], directory: str | Path) -> ModelCard:
        """Read the card back from ``load_pretrained``'s metadata.

        Raises:
            CheckpointError: When the directory was not written for inference (no card) or
                the card is incomplete or from a newer, incompatible version.
        """
        card = metadata.get(CARD_KEY)
        if not isinstance(card, Mapping):
            raise CheckpointError(
                f"{directory}: config.json has no '{CARD_KEY}' metadata, so the backbone and "
                "label names are unknown; create the directory with `ptssnn train` (or "
                "ptssnn.inference.save_recognizer)"
            )
        version = card.get("format_version", 0)
        if version > CARD_VERSION:
            raise CheckpointError(
                f"{directory}: model card version {version} is newer than this ptssnn "
                f"understands ({CARD_VERSION}); upgrade ptssnn"
            )
        try:
            backbone = card["backbone"]
            labels = tuple(str(x) for x in card["labels"])
            if "pipeline" in card:
                pipeline = FeaturePipeline.from_dict(card["pipeline"])
            else:  # version 1
                pipeline = FeaturePipeline(layers=str(card.get("layers", "all")),
                                           frame_pool=int(card.get("frame_pool", 1)))
            if not pipeline.resolved:
                raise ValueError("the layer selection is 'auto'")
            result = cls(
                labels=labels,
                backbone=str(backbone["name"]),
                backbone_options=dict(backbone.get("options", {})),
                backbone_identity=dict(backbone.get("identity", {})),
                pipeline=pipeline,
                sample_rate=int(card.get("sample_rate", 16000)),
                frame_rate=int(card.get("frame_rate", 50)),
                preset=card.get("preset"),
            )
        except (KeyError, TypeError, ValueError, PtssnnError) as error:
            raise CheckpointError(
                f"{directory}: incomplete '{CARD_KEY}' metadata in config.json ({error!r}); "
                "re-create the model directory with `ptssnn train`"
            ) from error
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise CheckpointError(
                f"{directory}: label names {list(labels)} must be at least two distinct names"
            )
        return result


def save_recognizer(
    model: Any,
    directory: str | Path,
    card: ModelCard,
    training_summary: Mapping[str, Any] | None = None,
) -> Path:
    """Write a self-contained model directory that :class:`EmotionRecognizer` can load.

    Args:
        model: The trained head (``ptssnn.models.PTSSNN``).
        directory: Output directory (created; existing files are overwritten).
        card: Backbone, layers and label names the head was trained with.
        training_summary: Optional JSON-able training record; stored in the metadata and,
            for people, as ``training_summary.json``.

    Returns:
        The directory.
    """

    from ptssnn.models.checkpoint import save_pretrained

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, Any] = {CARD_KEY: card.to_metadata()}
    if training_summary is not None:
        metadata["training"] = dict(training_summary)
        (directory / "training_summary.json").write_text(
            strict_json(training_summary, indent=2, sort_keys=True, default=str) + "\n"
        )
    save_pretrained(model, directory, metadata)
    return directory
