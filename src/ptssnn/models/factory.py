"""The one head factory: ``(preset, overrides, input spec) -> head``.

A :class:`HeadSpec` names a preset and its config overrides; called with the input spec
(feature width, classes, input layers) it builds a fresh head. It is a plain, picklable
value, so the benchmark's worker processes, ``ptssnn train``, the probe's neural siblings and
the torchrun fold job all build heads the same way (and a fold job can store it as JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ptssnn.models.config import get_preset
from ptssnn.models.ptssnn import PTSSNN


@dataclass(frozen=True)
class HeadSpec:
    """A head preset plus overrides; ``spec(input_dim, num_classes, input_layers)`` builds it.

    Attributes:
        preset: One of :func:`ptssnn.models.list_presets`.
        overrides: :class:`~ptssnn.models.PTSSNNConfig` fields (``seed``, ``width``...);
            ``input_layers`` is set from the input spec, not from here.
    """

    preset: str
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, input_dim: int, num_classes: int, input_layers: int = 1) -> PTSSNN:
        """A fresh head for ``input_dim`` features (of ``input_layers`` hidden states, > 1 =
        a learned weighted layer sum) and ``num_classes`` classes.

        Raises:
            ModelConfigError: Unknown preset or option, or invalid values.
        """
        options = dict(self.overrides)
        if input_layers > 1:
            options["input_layers"] = input_layers
        return PTSSNN(get_preset(self.preset, input_dim=input_dim, num_classes=num_classes,
                                 **options))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"preset": self.preset, "overrides": dict(self.overrides)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeadSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(str(data["preset"]), dict(data.get("overrides", {})))
