"""The service's profile folder: id validation, limits, atomic updates."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from ptssnn.features.profile import ProfileError, SpeakerProfile, fingerprint
from ptssnn.serve.profiles import ProfileStore, ProfileStoreError, describe

BACKBONE = {"name": "fake"}
PIPELINE = fingerprint({"layers": "0"})


def profile(clips: int = 1, seed: int = 0) -> SpeakerProfile:
    rng = np.random.default_rng(seed)
    return SpeakerProfile.empty(BACKBONE, PIPELINE, [0], 4).update(
        [rng.normal(size=(1, 10, 4)) for _ in range(clips)])


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "..", "a.b", "x" * 65, "é", "a b", "/etc"])
def test_ids_that_could_name_other_paths_are_refused(tmp_path: Path, bad: str) -> None:
    store = ProfileStore(tmp_path / "profiles")
    with pytest.raises(ProfileStoreError) as caught:
        store.path(bad)
    assert caught.value.status == 422 and caught.value.code == "invalid_profile_id"
    with pytest.raises(ProfileStoreError):
        store.create(profile(), bad)
    assert list((tmp_path / "profiles").iterdir()) == []


def test_create_get_update_delete(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    given = store.create(profile(2), "ana_01")
    generated = store.create(profile(1))
    assert given == "ana_01" and len(generated) == 16
    assert store.get("ana_01").clips == 2
    updated = store.update("ana_01", lambda p: p.update(np.ones((1, 5, 4))))
    assert updated.clips == 3 and store.get("ana_01").clips == 3
    assert describe("ana_01", updated)["clips"] == 3 and "mean" not in describe("ana_01", updated)
    with pytest.raises(ProfileStoreError) as caught:
        store.create(profile(), "ana_01")
    assert caught.value.code == "profile_exists"
    store.delete("ana_01")
    for call in (lambda: store.get("ana_01"), lambda: store.delete("ana_01")):
        with pytest.raises(ProfileStoreError) as caught:
            call()
        assert caught.value.status == 404


def test_count_limit_and_model_check(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path, max_profiles=2)
    store.create(profile(), "a")
    store.create(profile(), "b")
    with pytest.raises(ProfileStoreError) as caught:
        store.create(profile(), "c")
    assert caught.value.status == 507 and not (tmp_path / "c.json").exists()
    store.delete("a")
    store.create(profile(), "c")

    def refuse(_: SpeakerProfile) -> None:
        raise ProfileError(f"{tmp_path}/b.json: made for another model")

    strict = ProfileStore(tmp_path, check=refuse)
    with pytest.raises(ProfileStoreError) as caught:
        strict.get("b")
    assert caught.value.code == "profile_mismatch" and str(tmp_path) not in caught.value.message


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    store.create(profile(1), "p")

    def add() -> None:
        for _ in range(10):
            store.update("p", lambda p: p.update(np.ones((1, 3, 4))))

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("p").clips == 41
