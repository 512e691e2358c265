"""Every ```python block of README.md and docs/*.md runs as written.

Blocks run in a scratch folder holding what the docs name: a small model directory in
``models/casia``, a clip in ``clip.wav``, one utterance's features in ``features.npy`` and a
NIR export of the model in ``head-nir``. A block that needs real corpora starts with
``# not run:`` and says why.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlike import voiced

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def snippets() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return found


SNIPPETS = snippets()


def test_the_readme_has_a_python_example() -> None:
    assert any(name.startswith("README.md") for name, _ in SNIPPETS)


@pytest.fixture(scope="module")
def scratch(enrol_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ptssnn.export import export_nir
    from ptssnn.models import load_pretrained

    folder = tmp_path_factory.mktemp("docs")
    shutil.copytree(enrol_model_dir, folder / "models" / "casia")  # takes speaker profiles
    sf.write(folder / "clip.wav", voiced(1.5, seed=4), 16000)
    (folder / "me").mkdir()
    for index, name in enumerate(["me1.wav", "me2.wav", "me/1.wav", "me/2.wav", "me/3.wav"]):
        sf.write(folder / name, voiced(1.2, seed=10 + index), 16000)
    model, metadata = load_pretrained(folder / "models" / "casia")
    features = np.random.default_rng(0).standard_normal((120, model.config.input_dim))
    np.save(folder / "features.npy", features)
    export_nir(model, folder / "head-nir", metadata=metadata, check=False)
    return folder


@pytest.mark.parametrize(("name", "code"), SNIPPETS, ids=[name for name, _ in SNIPPETS])
def test_snippet_runs(name: str, code: str, scratch: Path, monkeypatch: pytest.MonkeyPatch
                      ) -> None:
    if code.startswith("# not run:"):
        pytest.skip(code.splitlines()[0])
    monkeypatch.chdir(scratch)
    exec(compile(code, name, "exec"), {"__name__": "__snippet__"})
