"""Analysis windows for long recordings."""

from __future__ import annotations

import itertools

import pytest

from ptssnn.inference import plan_windows


def test_short_audio_is_one_whole_window() -> None:
    assert plan_windows(1000, 16000, window_s=8.0, hop_s=4.0) == [(0, 1000)]
    assert plan_windows(128000, 16000, window_s=8.0, hop_s=4.0) == [(0, 128000)]


def test_long_audio_windows_cover_everything_with_full_windows() -> None:
    rate = 16000
    n = 20 * rate + 123
    windows = plan_windows(n, rate, window_s=8.0, hop_s=4.0)
    assert windows[0] == (0, 8 * rate)
    assert windows[-1] == (n - 8 * rate, n)  # last window aligned to the end
    assert all(e - s == 8 * rate for s, e in windows)
    starts = [s for s, _ in windows]
    assert starts == sorted(set(starts))
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(windows)]
    assert all(g <= 4 * rate for g in gaps)  # at most one hop apart: no gap, full overlap
    assert max(gaps) - min(gaps) <= 1  # spread evenly
    assert len(windows) == 5  # 12.0077 s to cover after the first window → 4 gaps


def test_exact_multiple_has_no_duplicate_tail() -> None:
    windows = plan_windows(16 * 16000, 16000, window_s=8.0, hop_s=4.0)
    assert windows == [(0, 128000), (64000, 192000), (128000, 256000)]


@pytest.mark.parametrize(
    ("n", "window", "hop"), [(0, 8.0, 4.0), (100, 0.0, 1.0), (100, 1.0, 0.0), (100, 1.0, 2.0)]
)
def test_bad_arguments_raise(n: int, window: float, hop: float) -> None:
    with pytest.raises(ValueError):
        plan_windows(n, 16000, window, hop)
