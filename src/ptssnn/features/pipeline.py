"""``FeaturePipeline``: the one piece of code that turns backbone hidden states into head input.

Training (cached features → batches), evaluation, offline prediction and streaming all call
it, and the model card stores it, so a head is always fed what it was trained on (s3prl's
``Featurizer``, timm's ``resolve_data_config``: one preprocessing object, used at both ends).

Stages, per utterance (``hidden`` is ``[L, T, D]``, every hidden state of the backbone)::

    hidden ──to_storage──► [L, T, D] in the storage dtype (float16: the cache's dtype)
           ──standardise(moments)──► per speaker (optional; identity without moments)
           ──select──► [T, D] (one state or an average) or [L_sel, T, D] (several states)
           ──pool──► frames averaged in groups of ``frame_pool``
    items  ──collate──► (x [B, T, D] | [B, L_sel, T, D] float32, mask [B, T] bool)

**Dtype policy.** Every stage stores its result in the storage dtype (``float16``), as the
feature cache does; averages and standardisation are computed in float32 and rounded back.
Deployment rounds the backbone's float32 output to float16 first, so a clip gives *identical*
head input whether its features came from the cache (training) or from the backbone just now
(prediction). ``collate`` casts to float32 for the head.

**Normalisation.** The global (training-split) moments live inside the head
(``PTSSNN.set_input_statistics``: buffers saved with the weights and exported with them), so
``moments=None`` means "the head's own global standardisation only". A
:class:`Moments` passed to :meth:`FeaturePipeline.prepare` / :meth:`head_input` (a speaker's
moments: the benchmark's ``normalisation="speaker"``, and the speaker profiles of enrolment)
standardises every hidden state per channel *before* layer selection, exactly as the
per-speaker training tables are built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ptssnn.errors import PtssnnError
from ptssnn.features.layers import LayerSelection

#: Storage dtypes by name (the feature cache's choices).
STORAGE_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "float32": torch.float32}
#: How a head's input is standardised (resolved modes; ``auto`` is a training request).
PIPELINE_NORMALISATIONS = ("global", "speaker", "none")
#: Bumped when the meaning of a saved pipeline changes.
PIPELINE_VERSION = 1


class FeaturePipelineError(PtssnnError):
    """A pipeline that cannot be built or does not fit the features it is given."""


@dataclass(frozen=True)
class Moments:
    """Per-channel mean and standard deviation of features.

    Attributes:
        mean: ``[L, D]`` (per hidden state) or ``[D]`` float32.
        std: Same shape, floored at 1e-5 so dead channels divide safely.
    """

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def of(cls, items: Sequence[torch.Tensor]) -> Moments:
        """Moments over every frame of ``[..., T, D]`` items (float64 sums, so long corpora
        in float16 lose no precision).

        Raises:
            FeaturePipelineError: No items or no frames.
        """
        if not items:
            raise FeaturePipelineError("no features to compute moments of")
        first = items[0]
        total = torch.zeros(first.shape[:-2] + first.shape[-1:], dtype=torch.float64)
        square = torch.zeros_like(total)
        count = 0
        for item in items:
            values = item.double()
            total += values.sum(-2)
            square += (values * values).sum(-2)
            count += item.shape[-2]
        if count == 0:
            raise FeaturePipelineError("no frames to compute moments of")
        mean = total / count
        variance = (square / count - mean * mean).clamp(min=0.0)
        return cls(mean.float(), variance.sqrt().clamp(min=1e-5).float())


def standardise(item: torch.Tensor, moments: Moments) -> torch.Tensor:
    """``(item - mean) / std`` per channel, computed in float32, back in the item's dtype.

    Args:
        item: ``[L, T, D]`` (moments ``[L, D]``) or ``[T, D]`` (moments ``[D]``).
    """
    scaled = (item.float() - moments.mean.unsqueeze(-2)) / moments.std.unsqueeze(-2)
    return scaled.to(item.dtype)


def pad_items(
    items: Sequence[torch.Tensor],
    *,
    crop_frames: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad prepared items to the longest one and build the mask (the collation stage).

    Args:
        items: ``[T_i, D]`` or ``[L, T_i, D]`` tensors, all of the same rank.
        crop_frames: Random crop of longer items to this many frames (training only; needs
            ``generator``).
        generator: Randomness for the crop offsets.

    Returns:
        ``(x, mask)``: ``x`` ``[B, T, D]`` or ``[B, L, T, D]`` float32, ``mask`` ``[B, T]``
        bool, True on real frames.
    """
    pieces = []
    for item in items:
        frames = item.shape[-2]
        if crop_frames is not None and frames > crop_frames and generator is not None:
            start = int(torch.randint(0, frames - crop_frames + 1, (1,), generator=generator))
            item = item[..., start : start + crop_frames, :]
        pieces.append(item)
    longest = max(p.shape[-2] for p in pieces)
    x = torch.zeros((len(pieces), *pieces[0].shape[:-2], longest, pieces[0].shape[-1]),
                    dtype=torch.float32)
    mask = torch.zeros(len(pieces), longest, dtype=torch.bool)
    for row, piece in enumerate(pieces):
        frames = piece.shape[-2]
        x[row, ..., :frames, :] = piece.float()
        mask[row, :frames] = True
    return x, mask


@dataclass(frozen=True)
class FeaturePipeline:
    """Layer selection, speaker standardisation, frame pooling, dtype and collation.

    Attributes:
        layers: Layer selection text (:class:`~ptssnn.features.layers.LayerSelection`
            grammar); ``"auto"`` only until :meth:`resolve` (it cannot be saved or run).
        frame_pool: Average groups of this many backbone frames (8: 50 Hz → 6.25 Hz); a
            last, shorter group is averaged over the frames it has.
        dtype: Storage dtype of every stage (``"float16"``: the cache's; see the module
            docstring).
        normalisation: What the head was trained on: ``"global"`` (its own training
            moments only), ``"speaker"`` (features standardised per speaker first: pass
            that speaker's :class:`Moments`) or ``"none"`` (raw features).
    """

    layers: str = "all"
    frame_pool: int = 1
    dtype: str = "float16"
    normalisation: str = "global"

    def __post_init__(self) -> None:
        selection = LayerSelection.parse(self.layers)  # raises on bad text
        object.__setattr__(self, "layers", str(selection) if selection.auto else
                           _plain(self.layers))
        if int(self.frame_pool) < 1:
            raise FeaturePipelineError(f"frame_pool must be >= 1, got {self.frame_pool}")
        object.__setattr__(self, "frame_pool", int(self.frame_pool))
        if self.dtype not in STORAGE_DTYPES:
            raise FeaturePipelineError(
                f"unknown storage dtype {self.dtype!r}: use {', '.join(STORAGE_DTYPES)}")
        if self.normalisation not in PIPELINE_NORMALISATIONS:
            raise FeaturePipelineError(
                f"normalisation must be one of {', '.join(PIPELINE_NORMALISATIONS)}, got "
                f"{self.normalisation!r} (resolve 'auto' first)")

    # ------------------------------------------------------------------ description
    @property
    def selection(self) -> LayerSelection:
        """The parsed layer selection."""
        return LayerSelection.parse(self.layers)

    @property
    def resolved(self) -> bool:
        """False while the layer selection is ``"auto"``."""
        return not self.selection.auto

    @property
    def storage_dtype(self) -> torch.dtype:
        """The torch dtype of :attr:`dtype`."""
        return STORAGE_DTYPES[self.dtype]

    def replace(self, **changes: Any) -> FeaturePipeline:
        """A copy with some fields changed (validated), e.g. the resolved ``layers``."""
        return dataclasses.replace(self, **changes)

    def input_layers(self, num_hidden_states: int) -> int:
        """How many layers the head receives (``input_layers`` of the model config)."""
        return self.selection.num_selected(num_hidden_states)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the model card's ``"pipeline"``).

        Raises:
            FeaturePipelineError: The layer selection is still ``"auto"``.
        """
        if not self.resolved:
            raise FeaturePipelineError("resolve the 'auto' layer selection before saving it")
        return {"version": PIPELINE_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeaturePipeline:
        """Inverse of :meth:`to_dict`.

        Raises:
            FeaturePipelineError: Unknown keys or a newer version.
        """
        values = dict(data)
        version = int(values.pop("version", PIPELINE_VERSION))
        if version > PIPELINE_VERSION:
            raise FeaturePipelineError(
                f"feature pipeline version {version} is newer than this ptssnn understands "
                f"({PIPELINE_VERSION}); upgrade ptssnn")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise FeaturePipelineError(f"unknown feature pipeline keys {unknown}")
        return cls(**values)

    def fingerprint(self) -> str:
        """A short stable hash of :meth:`to_dict` (speaker profiles and caches record it)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ stages
    def to_storage(self, hidden: Any) -> torch.Tensor:
        """``[L, T, D]`` (or ``[T, D]`` = one state) tensor or array → ``[L, T, D]`` tensor
        in the storage dtype (a copy of read-only memory maps)."""
        if isinstance(hidden, np.ndarray):
            hidden = torch.from_numpy(np.array(hidden))
        if hidden.dim() == 2:
            hidden = hidden.unsqueeze(0)
        if hidden.dim() != 3:
            raise FeaturePipelineError(
                f"hidden states must be [L, T, D] or [T, D], got {tuple(hidden.shape)}")
        return hidden.to(self.storage_dtype)

    def standardise(self, item: torch.Tensor, moments: Moments | None) -> torch.Tensor:
        """Per-channel standardisation by ``moments`` (identity when ``None``); see
        :func:`standardise`."""
        return item if moments is None else standardise(item, moments)

    def select(self, item: torch.Tensor) -> torch.Tensor:
        """``[L, T, D]`` → ``[T, D]`` (one state or an average) or ``[L_sel, T, D]``; a
        ``[T, D]`` item is one hidden state.

        Raises:
            LayerSelectionError: ``auto`` or an index beyond the item's states.
        """
        selected = self.selection.apply(item if item.dim() == 3 else item.unsqueeze(0))
        return selected[0] if selected.shape[0] == 1 else selected

    def pool(self, item: torch.Tensor) -> torch.Tensor:
        """Average non-overlapping groups of :attr:`frame_pool` frames along axis -2, in
        float32, back in the item's dtype; the last, shorter group is averaged over the
        frames it has (no frame dropped or diluted by padding)."""
        factor = self.frame_pool
        if factor <= 1:
            return item
        frames = item.shape[-2]
        groups = -(-frames // factor)
        padded = torch.zeros((*item.shape[:-2], groups * factor, item.shape[-1]),
                             dtype=torch.float32)
        padded[..., :frames, :] = item.float()
        sums = padded.reshape(*item.shape[:-2], groups, factor, item.shape[-1]).sum(-2)
        counts = torch.full((groups, 1), float(factor))
        counts[-1] = frames - (groups - 1) * factor
        return (sums / counts).to(item.dtype)

    def frames(self, hidden: Any, moments: Moments | None = None) -> torch.Tensor:
        """Every stage but pooling (streaming pools whole groups as they complete)."""
        return self.select(self.standardise(self.to_storage(hidden), moments))

    def prepare(self, hidden: Any, moments: Moments | None = None) -> torch.Tensor:
        """One utterance's hidden states → its head-input item (storage dtype).

        Args:
            hidden: ``[L, T, D]`` every hidden state (cache entry or backbone output).
            moments: A speaker's moments at the pipeline's input (``[L, D]``); ``None``:
                the head's global standardisation only.

        Returns:
            ``[T', D]`` or ``[L_sel, T', D]`` with ``T' = ceil(T / frame_pool)``.
        """
        return self.pool(self.frames(hidden, moments))

    collate = staticmethod(pad_items)

    def head_input(
        self, hidden_states: Sequence[Any], moments: Moments | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states of several utterances (or windows) → ``(x, mask)`` for the head.

        Args:
            hidden_states: ``[L, T_i, D]`` each.
            moments: As in :meth:`prepare` (one speaker for the whole batch).

        Returns:
            ``x`` ``[B, T, D]`` or ``[B, L_sel, T, D]`` float32, ``mask`` ``[B, T]`` bool.
        """
        return pad_items([self.prepare(h, moments) for h in hidden_states])


def _plain(text: str) -> str:
    """Selection text as written by people, normalised only in case and spaces (so saved
    cards and fold records keep the names they had: ``"mean"``, ``"mean:1-3"``, ``"3"``)."""
    return str(text).strip().lower().replace(" ", "")
