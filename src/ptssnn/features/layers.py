"""Which hidden states of a backbone a head reads: the one layer grammar of the package.

Used by the feature cache (which hidden states to store), by training (which ones a head
reads, ``"auto"`` chosen per fold) and by deployment (the model card's pipeline).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from ptssnn.errors import PtssnnError

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

_RANGE = re.compile(r"^(\d+)-(\d+)$")
_HELP = ("use 'auto', 'middle', 'all', one index like '3' or '-1', a list like '1,3,5', a "
         "range like "
         "'2-4', or 'mean' / 'mean:2-4' / 'mean:1,3' for an average")


class LayerSelectionError(PtssnnError):
    """A layer selection that cannot be parsed or does not fit the backbone."""


@dataclass(frozen=True)
class LayerSelection:
    """A selection of hidden states.

    Grammar (case and spaces ignored): ``"auto"`` (chosen on validation speakers, see
    :func:`ptssnn.training.select_layers`; must be resolved before features are prepared or
    saved), ``"middle"`` (the middle hidden state, index ``L // 2``: see
    :func:`middle_layer`), ``"all"`` (every hidden state, a multi-layer head), one index
    ``"3"`` / ``"-1"``,
    a list ``"1,3,5"``, a range ``"2-4"``, and ``"mean"`` / ``"mean:all"`` / ``"mean:2-4"`` /
    ``"mean:1,3"`` (the average of those states, one input layer).

    Indices count hidden states: 0 is the input of the first block, ``L - 1`` the last
    layer; negative indices count from the end.

    Attributes:
        indices: Selected hidden-state indices in order, or ``None`` for all.
        mean: Average the selected states into one (``L_sel = 1``).
        auto: Not chosen yet (``indices`` and ``mean`` are then meaningless).
        middle: The middle hidden state of whatever backbone it meets (``L // 2``).
    """

    indices: tuple[int, ...] | None = None
    mean: bool = False
    auto: bool = False
    middle: bool = False

    @classmethod
    def parse(cls, text: str | int | LayerSelection) -> LayerSelection:
        """Parse a selection (an int or a ``LayerSelection`` passes through).

        Raises:
            LayerSelectionError: The text is not one of the accepted forms.
        """
        if isinstance(text, LayerSelection):
            return text
        if isinstance(text, int):
            return cls(indices=(text,))
        spec = str(text).strip().lower().replace(" ", "")
        if spec == "auto":
            return cls(auto=True)
        if spec == "middle":
            return cls(middle=True)
        if spec == "mean":
            return cls(indices=None, mean=True)
        mean = spec.startswith("mean:")
        if mean:
            spec = spec[len("mean:") :]
        if spec in ("all", "*"):
            return cls(indices=None, mean=mean)
        indices: list[int] = []
        for part in filter(None, spec.split(",")):
            match = _RANGE.match(part)
            try:
                if match:
                    start, stop = int(match.group(1)), int(match.group(2))
                    if stop < start:
                        raise ValueError
                    indices.extend(range(start, stop + 1))
                else:
                    indices.append(int(part))
            except ValueError:
                raise LayerSelectionError(f"bad layer selection {text!r}: {_HELP}") from None
        if not indices:
            raise LayerSelectionError(f"layer selection {text!r} selects no layer: {_HELP}")
        return cls(indices=tuple(indices), mean=mean)

    def __str__(self) -> str:
        if self.auto:
            return "auto"
        if self.middle:
            return "middle"
        if self.indices is None:
            return "mean" if self.mean else "all"
        body = ",".join(map(str, self.indices))
        return f"mean:{body}" if self.mean else body

    def _require_resolved(self) -> None:
        if self.auto:
            raise LayerSelectionError(
                "layer selection 'auto' must be resolved (chosen on validation speakers) "
                "before features are prepared or saved")

    def resolve(self, num_hidden_states: int) -> tuple[int, ...]:
        """Absolute indices for a backbone with ``num_hidden_states`` states.

        Raises:
            LayerSelectionError: ``auto``, or an index out of range.
        """
        self._require_resolved()
        if self.middle:
            return (middle_layer(num_hidden_states),)
        if self.indices is None:
            return tuple(range(num_hidden_states))
        resolved = []
        for index in self.indices:
            absolute = index + num_hidden_states if index < 0 else index
            if not 0 <= absolute < num_hidden_states:
                raise LayerSelectionError(
                    f"layer {index} does not exist: this backbone has {num_hidden_states} "
                    f"hidden states (0 = input of the first block ... {num_hidden_states - 1} "
                    "= last)"
                )
            resolved.append(absolute)
        return tuple(resolved)

    def canonical(self, num_hidden_states: int) -> str:
        """The selection with absolute indices (so ``"-1"`` and ``"6"`` share one cache key)."""
        body = ",".join(map(str, self.resolve(num_hidden_states)))
        return f"mean:{body}" if self.mean else body

    def num_selected(self, num_hidden_states: int) -> int:
        """``L_sel``: hidden states after selection (1 for an average)."""
        return 1 if self.mean else len(self.resolve(num_hidden_states))

    def apply(self, hidden_states: ArrayT) -> ArrayT:
        """Select (and average, in float32, back to the input dtype) along the first axis.

        Args:
            hidden_states: ``[L, T, D]`` tensor or array.

        Returns:
            ``[L_sel, T, D]`` of the same type and dtype.
        """
        index = list(self.resolve(hidden_states.shape[0]))
        selected = hidden_states[index]
        if self.mean:
            if isinstance(selected, torch.Tensor):
                return selected.float().mean(dim=0, keepdim=True).to(selected.dtype)
            return selected.mean(axis=0, keepdims=True, dtype=np.float32).astype(selected.dtype)
        return selected


def middle_layer(num_hidden_states: int) -> int:
    """Index of the middle hidden state of ``num_hidden_states`` (embedding output included).

    The prior behind the ``"middle"`` selection: layer-wise probing of speech encoders finds
    paralinguistic information (speaker, emotion) peaking in the middle layers, below the
    top layers that specialise in the pre-training task (Pasad et al., 2021; Chen et al.,
    WavLM 2022; the SUPERB emotion weights). A single hidden state also gives a small head
    ``L`` times less input to overfit than all of them.
    """
    if num_hidden_states < 1:
        raise LayerSelectionError(
            f"a backbone has at least one hidden state, not {num_hidden_states}")
    return num_hidden_states // 2
