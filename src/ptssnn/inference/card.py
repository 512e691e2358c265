"""The deployment metadata of a model directory (what a recogniser needs besides weights).

A model directory written by ``ptssnn train`` is self-contained::

    MODEL_DIR/
      model.safetensors      head weights (``ptssnn.models.save_pretrained``)
      config.json            head config + the metadata below (key ``"recognizer"``)
      training_summary.json  corpora, speakers, epochs, validation metrics (human-readable)

The ``"recognizer"`` metadata names the label order, the backbone (registry name, load
options and its identity, which includes a hash of its weights), the layer selection and
the audio/frame rates, so that :class:`ptssnn.inference.EmotionRecognizer` can rebuild the
exact feature pipeline the head was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptssnn.errors import CheckpointError

#: Metadata key under which the recogniser card lives inside ``config.json``.
CARD_KEY = "recognizer"
#: Bumped when the card's meaning changes incompatibly.
CARD_VERSION = 1


@dataclass(frozen=True)
class ModelCard:
    """Everything beyond the head's weights that inference needs.

    Attributes:
        labels: Class names in logit order.
        backbone: Registry name for ``ptssnn.backbones.load_backbone``.
        backbone_options: Keyword options it was loaded with (e.g. ``{"padding": "30s"}``).
        backbone_identity: ``backbone.identity()`` at training time (weights hash, front-end
            settings); checked on load so that a head never meets features of other weights.
        layers: Layer selection spec (``"all"``, ``"3"``, ``"1,3,5"``, ``"mean:2-4"``).
        sample_rate: Audio rate the backbone expects (Hz).
        frame_rate: Backbone frames per second.
        frame_pool: Groups of this many backbone frames are averaged before the head (the
            trainer's ``TrainConfig.frame_pool``; 4 → the head runs at 12.5 Hz).
        preset: Model preset the head was created from (informational).
    """

    labels: tuple[str, ...]
    backbone: str
    backbone_options: dict[str, Any] = field(default_factory=dict)
    backbone_identity: dict[str, Any] = field(default_factory=dict)
    layers: str = "all"
    sample_rate: int = 16000
    frame_rate: int = 50
    frame_pool: int = 1
    preset: str | None = None

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
            "layers": self.layers,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "frame_pool": self.frame_pool,
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
            result = cls(
                labels=labels,
                backbone=str(backbone["name"]),
                backbone_options=dict(backbone.get("options", {})),
                backbone_identity=dict(backbone.get("identity", {})),
                layers=str(card.get("layers", "all")),
                sample_rate=int(card.get("sample_rate", 16000)),
                frame_rate=int(card.get("frame_rate", 50)),
                frame_pool=int(card.get("frame_pool", 1)),
                preset=card.get("preset"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{directory}: incomplete '{CARD_KEY}' metadata in config.json ({error!r}); "
                "re-create the model directory with `ptssnn train`"
            ) from error
        if result.frame_pool < 1:
            raise CheckpointError(f"{directory}: frame_pool must be >= 1, got {result.frame_pool}")
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
    import json

    from ptssnn.models import save_pretrained

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, Any] = {CARD_KEY: card.to_metadata()}
    if training_summary is not None:
        metadata["training"] = dict(training_summary)
        (directory / "training_summary.json").write_text(
            json.dumps(training_summary, indent=2, sort_keys=True, default=str) + "\n"
        )
    save_pretrained(model, directory, metadata)
    return directory
