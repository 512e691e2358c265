"""The on-disk store: keys, atomic entries, integrity checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptssnn.features import FeatureCacheError, FeatureStore, default_cache_dir

IDENTITY = {"name": "fake", "weights_sha256": "aa", "padding": "none", "front_end": {"n": 80}}


def _namespace(store: FeatureStore, **changes: object):
    identity = {**IDENTITY, **changes.pop("identity", {})}
    kwargs = {"num_hidden_states": 3, "dtype": "float16", "audio_policy": {"max_seconds": 30}}
    kwargs.update(changes)
    layers = kwargs.pop("layers", "0,1,2")
    return store.namespace(identity, layers, **kwargs)


def test_key_covers_every_ingredient(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    base = _namespace(store)
    assert _namespace(store).path == base.path  # deterministic
    variants = [
        _namespace(store, identity={"weights_sha256": "bb"}),
        _namespace(store, identity={"padding": "30s"}),
        _namespace(store, identity={"front_end": {"n": 40}}),
        _namespace(store, layers="mean:0,1,2"),
        _namespace(store, dtype="float32"),
        _namespace(store, audio_policy={"max_seconds": 20}),
    ]
    assert len({v.key for v in variants} | {base.key}) == len(variants) + 1
    with pytest.raises(FeatureCacheError, match="float16 or float32"):
        _namespace(store, dtype="int8")


def test_round_trip_and_integrity_checks(tmp_path: Path) -> None:
    namespace = _namespace(FeatureStore(tmp_path))
    namespace.ensure()
    assert (namespace.path / "namespace.json").is_file()
    array = np.random.default_rng(0).standard_normal((3, 17, 5)).astype(np.float32)
    written = namespace.write("ab" * 32, array, seconds=0.34, utt_id="u1")
    assert written.shape == (3, 17, 5) and written.num_frames == 17
    read = namespace.read("ab" * 32)
    assert read == written
    stored = np.load(read.path, mmap_mode="r")
    assert stored.dtype == np.float16
    np.testing.assert_array_equal(stored, array.astype(np.float16))
    assert not list(namespace.path.glob("entries/*/.tmp-*"))  # no temporaries left

    # A flipped byte keeps the size: caught by the checksum only.
    data = bytearray(read.path.read_bytes())
    data[-3] ^= 0xFF
    read.path.write_bytes(bytes(data))
    assert namespace.read("ab" * 32, verify="size") is not None
    assert namespace.read("ab" * 32, verify="checksum") is None
    # Truncation is caught by size.
    read.path.write_bytes(bytes(data[:-10]))
    assert namespace.read("ab" * 32, verify="size") is None
    # A missing sidecar means no entry.
    namespace.write("cd" * 32, array, seconds=0.34, utt_id="u2")
    namespace.files("cd" * 32)[1].unlink()
    assert namespace.read("cd" * 32) is None
    assert namespace.read("ef" * 32) is None


def test_overflowing_fp16_is_refused(tmp_path: Path) -> None:
    namespace = _namespace(FeatureStore(tmp_path))
    namespace.ensure()
    with pytest.raises(FeatureCacheError, match="float32"):
        namespace.write("ab" * 32, np.full((1, 2, 2), 1e6, np.float32), seconds=1, utt_id="u")


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    namespace = _namespace(FeatureStore(tmp_path))
    namespace.ensure()
    folder = namespace.path / "entries" / "ab"
    folder.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host = os.uname().nodename
    stale = folder / f".tmp-{host}-{dead.stdout.strip()}-{'0' * 32}"
    live = folder / f".tmp-{host}-{os.getpid()}-{'1' * 32}"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    assert namespace.remove_stale_temporaries() == 1
    assert not stale.exists() and live.exists()


def test_unwritable_cache_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    namespace = _namespace(FeatureStore(blocker / "cache"))
    with pytest.raises(FeatureCacheError, match="--cache"):
        namespace.ensure()


def test_default_cache_dir_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTSSNN_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    assert FeatureStore().root == tmp_path / "elsewhere"
    monkeypatch.delenv("PTSSNN_CACHE")
    assert default_cache_dir() == Path.home() / ".cache/ptssnn/features"


def test_namespaces_listing(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    namespace = _namespace(store)
    namespace.ensure()
    namespace.write("ab" * 32, np.zeros((3, 4, 5), np.float32), seconds=0.1, utt_id="u")
    (listing,) = store.namespaces()
    assert listing["entries"] == 1 and listing["layers"] == "0,1,2" and listing["bytes"] > 120


def test_entry_lock_excludes_other_processes_and_dies_with_its_holder(tmp_path: Path) -> None:
    namespace = _namespace(FeatureStore(tmp_path))
    namespace.ensure()
    lock_file = namespace.lock("ab" * 32).path
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(lock_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert namespace.try_lock("ab" * 32) is None
        assert namespace.try_lock("cd" * 32) is not None  # another stripe is free
    finally:
        holder.kill()
        holder.wait()
    lock = namespace.try_lock("ab" * 32)  # the kernel released the dead holder's lock
    assert lock is not None
    lock.release()
