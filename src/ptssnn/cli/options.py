"""Option parsing shared by the commands that build heads (``benchmark``, ``train``)."""

from __future__ import annotations

import json
from typing import Any

from ptssnn.errors import PtssnnError


def parse_model_options(items: list[str] | None) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` (``--model-option``) → head options; VALUE is read as JSON
    (``true``, ``0.5``, ``"membrane"``) or, when it is not JSON, taken as a string.

    Raises:
        PtssnnError: An item without ``=``.
    """
    options: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise PtssnnError(f"--model-option {item!r}: use KEY=VALUE (VALUE as JSON)")
        key, value = item.split("=", 1)
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


SPEED_PERTURB_HELP = (
    "Also train on speed-perturbed copies of the training clips, e.g. 0.9,1.1 (Kaldi's "
    "factors: tempo and pitch scaled together; the final refit also on the validation clips' "
    "copies). Model selection and scoring read the original clips only; under a per-speaker "
    "normalisation each speed of a speaker is a voice of its own. Off by default: it helped "
    "EMOVO and hurt CASIA and URDU (benchmarks/README.md)."
)
EXTRACT_SPEED_PERTURB_HELP = (
    "Also extract speed-perturbed copies of every clip, e.g. 0.9,1.1, each factor into its "
    "own cache namespace (what `train` and `benchmark --speed-perturb` read)."
)


def speed_factors_option(text: str | None) -> tuple[float, ...]:
    """``--speed-perturb 0.9,1.1`` → ``(0.9, 1.1)``; ``None`` → ``()``.

    Raises:
        PtssnnError: A factor that is not a number in [0.5, 2].
    """
    from ptssnn.audio.perturbation import check_speed_factors

    if not text:
        return ()
    try:
        return check_speed_factors(text)
    except ValueError as error:
        raise PtssnnError(f"--speed-perturb {text!r}: {error}") from None
