"""Analysis windows for long recordings."""

from __future__ import annotations

import math


def plan_windows(
    num_samples: int, sample_rate: int, window_s: float, hop_s: float
) -> list[tuple[int, int]]:
    """Split ``num_samples`` of audio into overlapping analysis windows.

    A recording no longer than one window is a single window (the whole recording, so short
    clips are analysed exactly as in training). Longer ones get full windows of ``window_s``,
    the first at the start, the last ending at the end of the audio (so the tail is seen by
    a full-length window, not a short remainder), as few as keep the distance between
    consecutive starts at most ``hop_s``, spread evenly (an exact multiple gets exactly
    ``hop_s``).

    Args:
        num_samples: Length of the audio in samples (> 0).
        sample_rate: Samples per second.
        window_s: Window length in seconds (> 0).
        hop_s: Distance between window starts in seconds (0 < hop_s ≤ window_s).

    Returns:
        ``(start, end)`` sample indices, ``end`` exclusive, sorted by start, no duplicates.

    Raises:
        ValueError: On a non-positive length, window or hop, or a hop longer than the window
            (that would leave gaps).
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if window_s <= 0 or hop_s <= 0:
        raise ValueError(f"window and hop must be positive, got window={window_s}, hop={hop_s}")
    if hop_s > window_s:
        raise ValueError(f"hop ({hop_s} s) longer than the window ({window_s} s) leaves gaps")
    window = max(1, round(window_s * sample_rate))
    hop = max(1, round(hop_s * sample_rate))
    if num_samples <= window:
        return [(0, num_samples)]
    span = num_samples - window
    gaps = math.ceil(span / hop)
    starts = [round(i * span / gaps) for i in range(gaps + 1)]
    return [(s, s + window) for s in starts]
