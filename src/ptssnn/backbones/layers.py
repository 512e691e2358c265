"""Which hidden states of a backbone to keep: one layer, several, an average, or all."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from ptssnn.errors import PtssnnError

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

_RANGE = re.compile(r"^(\d+)-(\d+)$")


class LayerSpecError(PtssnnError):
    """A layer specification that cannot be parsed or does not fit the backbone."""


@dataclass(frozen=True)
class LayerSpec:
    """A selection of hidden states, parsed from ``"all"``, ``"3"``, ``"1,3,5"``, ``"2-4"`` or
    ``"mean:2-4"`` / ``"mean:1,3"``.

    Indices count hidden states: 0 is the input of the first block, ``L - 1`` the last
    layer. Negative indices count from the end (``"-1"`` is the last layer).

    Attributes:
        indices: Selected hidden-state indices in order, or ``None`` for all.
        mean: Average the selected states into one (``L_sel = 1``).
    """

    indices: tuple[int, ...] | None = None
    mean: bool = False

    @classmethod
    def parse(cls, text: str | int | LayerSpec) -> LayerSpec:
        """Parse a specification string (an int or a ``LayerSpec`` passes through).

        Raises:
            LayerSpecError: The string is not one of the accepted forms.
        """
        if isinstance(text, LayerSpec):
            return text
        if isinstance(text, int):
            return cls(indices=(text,))
        spec = str(text).strip().lower().replace(" ", "")
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
                raise LayerSpecError(
                    f"bad layer specification {text!r}: use 'all', one index like '3', a list "
                    "like '1,3,5', a range like '2-4', or 'mean:2-4' for an average"
                ) from None
        if not indices:
            raise LayerSpecError(f"layer specification {text!r} selects no layer")
        return cls(indices=tuple(indices), mean=mean)

    def __str__(self) -> str:
        body = "all" if self.indices is None else ",".join(map(str, self.indices))
        return f"mean:{body}" if self.mean else body

    def resolve(self, num_hidden_states: int) -> tuple[int, ...]:
        """Absolute indices for a backbone with ``num_hidden_states`` states.

        Raises:
            LayerSpecError: An index is out of range.
        """
        if self.indices is None:
            return tuple(range(num_hidden_states))
        resolved = []
        for index in self.indices:
            absolute = index + num_hidden_states if index < 0 else index
            if not 0 <= absolute < num_hidden_states:
                raise LayerSpecError(
                    f"layer {index} does not exist: this backbone has {num_hidden_states} hidden "
                    f"states (0 = input of the first block ... {num_hidden_states - 1} = last)"
                )
            resolved.append(absolute)
        return tuple(resolved)

    def canonical(self, num_hidden_states: int) -> str:
        """The spec with absolute indices (so ``"-1"`` and ``"6"`` share one cache key)."""
        body = ",".join(map(str, self.resolve(num_hidden_states)))
        return f"mean:{body}" if self.mean else body

    def num_selected(self, num_hidden_states: int) -> int:
        """``L_sel``: hidden states after selection."""
        return 1 if self.mean else len(self.resolve(num_hidden_states))

    def apply(self, hidden_states: ArrayT) -> ArrayT:
        """Select (and average) along the first axis.

        Args:
            hidden_states: ``[L, T, D]`` tensor or array.

        Returns:
            ``[L_sel, T, D]`` of the same type.
        """
        index = list(self.resolve(hidden_states.shape[0]))
        selected = hidden_states[index]
        if self.mean:
            if isinstance(selected, torch.Tensor):
                return selected.mean(dim=0, keepdim=True)
            return selected.mean(axis=0, keepdims=True, dtype=np.float32).astype(selected.dtype)
        return selected
