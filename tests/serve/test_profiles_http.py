"""Speaker profiles over HTTP: create / add clips / show / delete, predict with profile=ID.

Enrolling 20 clips and predicting one through HTTP gives the Python API's label and
probabilities; bad uploads get /predict's errors; ids cannot leave the profile folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from serving import Running, error_of, wav_bytes

from ptssnn.errors import PtssnnError
from ptssnn.features.profile import SpeakerProfile
from ptssnn.inference import EmotionRecognizer
from ptssnn.serve import create_app
from speechlike import voiced

SPEAKER = [0.6 * voiced(0.5 + 0.05 * i, seed=i, f0=110 + 4 * i) for i in range(20)]


@pytest.fixture(scope="module")
def recognizer(enrol_model_dir: Path) -> EmotionRecognizer:
    torch.set_num_threads(1)
    return EmotionRecognizer.load(enrol_model_dir, max_seconds=5.0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("profiles")


@pytest.fixture(scope="module")
def server(recognizer: EmotionRecognizer, folder: Path) -> Iterator[Running]:
    with Running(recognizer, max_upload_mb=4.0, profiles_dir=folder, max_profiles=3,
                 max_enrol_files=25) as running:
        yield running


def upload(waves: list[np.ndarray], names: list[str] | None = None) -> list[tuple]:
    names = names or [f"clip{i}.wav" for i in range(len(waves))]
    return [("files", (n, wav_bytes(w), "audio/wav")) for n, w in zip(names, waves, strict=True)]


def test_enrol_then_predict_equals_the_python_api(server: Running, recognizer: EmotionRecognizer,
                                                  folder: Path) -> None:
    probe = 0.6 * voiced(1.7, seed=99, f0=128)
    with httpx.Client(timeout=60) as client:
        created = client.post(f"{server.url}/profiles", files=upload(SPEAKER),
                              data={"id": "ana", "name": "Ana"})
        assert created.status_code == 201, created.text
        assert created.json() == {"id": "ana", "name": "Ana", "clips": 20,
                                  "frames": created.json()["frames"],
                                  "pipeline": recognizer.pipeline.fingerprint()}
        answer = client.post(f"{server.url}/predict", params={"profile": "ana"},
                             files={"file": ("probe.wav", wav_bytes(probe), "audio/wav")})
        assert answer.status_code == 200, answer.text
    # The Python API on the same (PCM-16 rounded) audio.
    import io

    import soundfile as sf

    def pcm(wave: np.ndarray) -> np.ndarray:
        return sf.read(io.BytesIO(wav_bytes(wave)), dtype="float32")[0]

    profile = recognizer.enrol([pcm(w) for w in SPEAKER], 16000)
    expected = recognizer.predict(pcm(probe), 16000, profile=profile)
    assert answer.json()["label"] == expected.label
    assert answer.json()["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)
    stored = SpeakerProfile.load(folder / "ana.json")
    np.testing.assert_allclose(stored.stats.mean, profile.stats.mean, atol=1e-9)


def test_add_show_delete_and_errors(server: Running) -> None:
    with httpx.Client(timeout=60) as client:
        created = client.post(f"{server.url}/profiles", files=upload(SPEAKER[:2]))
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        added = client.post(f"{server.url}/profiles/{pid}/clips", files=upload(SPEAKER[2:5]))
        assert added.status_code == 200 and added.json()["clips"] == 5
        assert client.get(f"{server.url}/profiles/{pid}").json()["clips"] == 5
        # A bad upload among good ones: /predict's error, nothing stored.
        bad = client.post(f"{server.url}/profiles/{pid}/clips",
                          files=upload([SPEAKER[5], np.zeros(100, np.float32)],
                                       ["ok.wav", "short.wav"]))
        assert "short.wav" in error_of(bad, 422, "audio_too_short")
        assert client.get(f"{server.url}/profiles/{pid}").json()["clips"] == 5
        junk = client.post(f"{server.url}/profiles",
                           files=[("files", ("junk.wav", b"RIFF....WAVEfmt junk", "audio/wav"))])
        error_of(junk, 415, "unreadable_audio")
        # Ids that could name other paths, unknown ids, taken ids.
        for bad_id in ("..", "a.b", "x" * 65):
            answer = client.post(f"{server.url}/profiles", files=upload(SPEAKER[:1]),
                                 data={"id": bad_id})
            error_of(answer, 422, "invalid_profile_id")
        escaped = client.get(f"{server.url}/profiles/..%2F..%2Fetc%2Fpasswd")
        assert escaped.status_code in (404, 422)
        assert client.get(f"{server.url}/profiles/nobody").status_code == 404
        predict = client.post(f"{server.url}/predict", params={"profile": "nobody"},
                              files={"file": ("a.wav", wav_bytes(SPEAKER[0]), "audio/wav")})
        error_of(predict, 404, "profile_not_found")
        taken = client.post(f"{server.url}/profiles", files=upload(SPEAKER[:1]),
                            data={"id": pid})
        error_of(taken, 409, "profile_exists")
        many = client.post(f"{server.url}/profiles", files=upload([SPEAKER[0]] * 26))
        error_of(many, 413, "too_many_files")
        # The count limit (3): "ana" (other test), pid, one more, then full.
        client.post(f"{server.url}/profiles", files=upload(SPEAKER[:1]), data={"id": "third"})
        full = client.post(f"{server.url}/profiles", files=upload(SPEAKER[:1]))
        error_of(full, 507, "profile_store_full")
        assert client.delete(f"{server.url}/profiles/{pid}").json() == {"deleted": pid}
        assert client.delete(f"{server.url}/profiles/{pid}").status_code == 404
        health = client.get(f"{server.url}/health").json()
        assert health["limits"]["max_profiles"] == 3 and health["profiles"] is True
        assert health["trained_for"] == "global"


def test_profiles_need_a_model_with_a_prior_and_a_folder(tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    bare = EmotionRecognizer.load(tiny_model_dir)
    with pytest.raises(PtssnnError, match="no speaker prior"):
        create_app(bare, profiles_dir=tmp_path)
    with Running(bare) as running, httpx.Client(timeout=30) as client:
        answer = client.post(f"{running.url}/predict", params={"profile": "x"},
                             files={"file": ("a.wav", wav_bytes(SPEAKER[0]), "audio/wav")})
        error_of(answer, 404, "profiles_disabled")
        assert client.get(f"{running.url}/profiles/x").status_code == 404
