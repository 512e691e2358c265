"""extract_features: caching, bad audio, interruption, corruption, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from features.feature_helpers import Utt, make_utterances, write_speechlike
from ptssnn.audio import load_audio
from ptssnn.backbones import load_backbone
from ptssnn.features import FeatureCacheError, FeatureStore, LayerSelection, extract_features


@pytest.fixture(scope="module")
def fbank() -> torch.nn.Module:
    return load_backbone("fbank")


def test_extract_then_hit_the_cache(tmp_path: Path, fbank: torch.nn.Module) -> None:
    utterances = make_utterances(tmp_path / "audio", 5)
    garbage = tmp_path / "audio" / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00not audio at all" * 10)
    bad = [Utt("bad-garbage", garbage), Utt("bad-missing", tmp_path / "audio" / "gone.wav")]
    everything = [utterances[0], bad[0], *utterances[1:3], bad[1], *utterances[3:]]
    store = FeatureStore(tmp_path / "cache")

    first = extract_features(everything, fbank, "all", store, progress=False)
    assert first.ids == tuple(u.id for u in utterances)  # input order, failures left out
    assert [f.id for f in first.failures] == ["bad-garbage", "bad-missing"]
    assert "gone.wav" in first.failures[1].path and first.failures[0].reason
    report = first.report
    assert (report.total, report.extracted, report.cached, report.failed) == (7, 5, 0, 2)
    assert report.real_time_factor > 0 and report.bytes_per_hour > 0

    for utt in utterances:
        features = first.get(utt.id)
        assert isinstance(features, np.memmap) and features.dtype == np.float16
        expected = fbank(torch.from_numpy(load_audio(utt.path))).numpy().astype(np.float16)
        np.testing.assert_array_equal(features, expected)
        assert (
            first.lengths[utt.id]
            == features.shape[1]
            == fbank.num_frames(round(sf_seconds(utt.path) * 16000))
        )
    assert (first.num_layers, first.hidden_size, len(first)) == (1, 80, 5)
    assert first.metadata()["backbone"]["name"] == "fbank"
    with pytest.raises(KeyError, match="bad-garbage"):
        first.get("bad-garbage")

    second = extract_features(everything, fbank, "all", store, progress=False)
    assert (second.report.extracted, second.report.cached, second.report.failed) == (0, 5, 2)
    assert second.ids == first.ids
    assert second.cache_bytes == first.cache_bytes


def sf_seconds(path: Path) -> float:
    import soundfile as sf

    return sf.info(str(path)).frames / 16000


def test_layers_and_content_are_in_the_key(tmp_path: Path) -> None:
    tiny = load_backbone("whisper-tiny.en")
    utterances = make_utterances(tmp_path / "audio", 2, seconds=0.5)
    store = FeatureStore(tmp_path / "cache")
    averaged = extract_features(utterances, tiny, "mean:1-2", store, progress=False)
    picked = extract_features(utterances, tiny, "1,4", store, progress=False)
    assert picked.report.extracted == 2  # a new layer spec never reuses other features
    assert averaged.get("utt-000").shape[0] == 1 and picked.get("utt-000").shape[0] == 2
    states = tiny(torch.from_numpy(load_audio(utterances[0].path)))
    np.testing.assert_allclose(
        averaged.get("utt-000"), LayerSelection.parse("mean:1-2").apply(states).numpy(), atol=2e-2
    )
    np.testing.assert_allclose(picked.get("utt-000")[1], states[4].numpy(), atol=2e-2)

    # Same id and path, new audio: the content hash misses, nothing stale comes back.
    write_speechlike(utterances[0].path, 0.7, seed=99)
    again = extract_features(utterances, tiny, "1,4", store, progress=False)
    assert (again.report.extracted, again.report.cached) == (1, 1)
    assert again.lengths["utt-000"] == 35 != picked.lengths["utt-000"]
    # "-1" and "4" are the same selection for a 5-state backbone: one cache entry.
    alias = extract_features(utterances, tiny, "1,-1", store, progress=False)
    assert alias.report.cached == 2


def test_interrupted_extraction_resumes(tmp_path: Path, fbank: torch.nn.Module) -> None:
    utterances = make_utterances(tmp_path / "audio", 6)
    store = FeatureStore(tmp_path / "cache")
    done: list[str] = []

    def stop_after_two(utt_id: str) -> None:
        done.append(utt_id)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_features(
            utterances, fbank, "all", store, progress=False, on_extracted=stop_after_two
        )
    assert not list(store.root.glob("*/entries/*/.tmp-*"))
    resumed = extract_features(utterances, fbank, "all", store, progress=False)
    assert (resumed.report.extracted, resumed.report.cached) == (4, 2)
    assert len(resumed) == 6


def test_damaged_entries_are_rebuilt(tmp_path: Path, fbank: torch.nn.Module) -> None:
    utterances = make_utterances(tmp_path / "audio", 4)
    store = FeatureStore(tmp_path / "cache")
    first = extract_features(utterances, fbank, "all", store, progress=False)
    reference = {i: np.array(first.get(i)) for i in first.ids}

    truncated = first.entry("utt-001").path
    truncated.write_bytes(truncated.read_bytes()[:-40])
    flipped = first.entry("utt-002").path
    data = bytearray(flipped.read_bytes())
    data[-7] ^= 0x55
    flipped.write_bytes(bytes(data))
    with pytest.raises(FeatureCacheError, match="rerun"):
        first.get("utt-001")

    # Size checks alone catch the truncation; the checksum (default) catches the flip too.
    by_size = extract_features(utterances, fbank, "all", store, progress=False, verify="size")
    assert (by_size.report.extracted, by_size.report.rebuilt) == (1, 1)
    repaired = extract_features(utterances, fbank, "all", store, progress=False)
    assert (repaired.report.extracted, repaired.report.rebuilt) == (1, 1)
    for utt_id, expected in reference.items():
        np.testing.assert_array_equal(repaired.get(utt_id), expected)


_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from ptssnn.audio import load_audio
    from ptssnn.features import extract_features
    from ptssnn.backbones import load_backbone

    folder, cache, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    class Utt:
        def __init__(self, path):
            self.id, self.path = path.stem, path
    utterances = [Utt(p) for p in sorted(folder.glob("*.wav"))]

    def slow_load(path, **policy):
        time.sleep(0.04)  # long enough that the two processes overlap on every entry
        return load_audio(path, **policy)

    backbone = load_backbone("fbank")
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    features = extract_features(utterances, backbone, "all", cache, progress=False,
                                load_audio=slow_load)
    print(json.dumps({"report": features.report.to_dict(), "ids": list(features.ids)}))
    """
)


def test_two_processes_at_once_share_the_work(tmp_path: Path, fbank: torch.nn.Module) -> None:
    utterances = make_utterances(tmp_path / "audio", 24, seconds=0.3)
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    go = tmp_path / "go"
    cache = tmp_path / "cache"
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "audio"), str(cache), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:  # both loaded and waiting: start them together
        assert worker.stdout.readline().strip() == "ready"
    go.touch()
    started = time.monotonic()
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert time.monotonic() - started < 120

    reports = [o["report"] for o in outputs]
    assert all(o["ids"] == [u.id for u in utterances] for o in outputs)
    # Every entry computed exactly once between the two; each process saw the others' work.
    assert sum(r["extracted"] for r in reports) == 24
    assert all(r["extracted"] + r["cached"] == 24 for r in reports)
    assert min(r["extracted"] for r in reports) > 0

    check = extract_features(utterances, fbank, "all", cache, progress=False)
    assert (check.report.cached, check.report.extracted) == (24, 0)
    for utt in utterances:
        expected = fbank(torch.from_numpy(load_audio(utt.path))).numpy().astype(np.float16)
        np.testing.assert_allclose(check.get(utt.id), expected, atol=1e-2)
    assert not list(cache.glob("*/entries/*/.tmp-*"))


def test_long_recordings_are_cropped_explicitly_counted_and_reported(
    tmp_path: Path, fbank: torch.nn.Module
) -> None:
    import io

    from rich.console import Console

    short = make_utterances(tmp_path / "audio", 2)
    long = Utt("long", write_speechlike(tmp_path / "audio" / "long.wav", 31.5, seed=7))
    store = FeatureStore(tmp_path / "cache")
    for attempt in ("extracted", "cached"):
        shown = io.StringIO()
        features = extract_features(
            [*short, long], fbank, "all", store, console=Console(file=shown, width=200)
        )
        report = features.report
        assert getattr(report, attempt) == 3
        assert report.extras == {
            "cropped": 1,
            "crop_seconds": 30.0,
            "cropped_away_seconds": pytest.approx(1.5, abs=1e-3),
            "cropped_ids": ["long"],
        }
        assert report.to_dict()["cropped"] == 1  # in --summary-json too
        assert features.lengths["long"] == fbank.num_frames(30 * 16000)
        assert "1 recording longer than 30 s was cropped to the first 30 s" in shown.getvalue()
    # Nothing cropped, nothing said.
    quiet = extract_features(short, fbank, "all", store, progress=False)
    assert quiet.report.extras == {}
