"""Scratch: tempo-only perturbation (WSOLA via audiotsm: duration / f, pitch kept), same
layout and names, under runs/s11/tp/f<f>/<corpus>; durations match the speed-perturbed
copies of runs/s10/sp (soxr to rate / f: duration / f, pitch * f).

PYTHONPATH=runs/s11/pylib .venv/bin/python runs/s11/tempo_perturb.py CORPUS 0.9,1.1
"""
import sys
from pathlib import Path
import numpy as np, soundfile as sf
from audiotsm import wsola
from audiotsm.io.array import ArrayReader, ArrayWriter

PAD = 2048  # WSOLA loses ~0.1 s at the edges: pad, stretch, cut back to len / f


def tempo(audio: np.ndarray, f: float) -> np.ndarray:  # audio: (channels, samples)
    n = audio.shape[1]
    writer = ArrayWriter(channels=audio.shape[0])
    wsola(audio.shape[0], speed=f).run(ArrayReader(np.pad(audio, ((0, 0), (PAD, PAD)))), writer)
    start = round(PAD / f)
    return writer.data[:, start:start + round(n / f)]


corpus, factors = sys.argv[1], [float(x) for x in sys.argv[2].split(',')]
src = Path('../shared/data') / corpus
for f in factors:
    dst = Path(f'runs/s11/tp/f{f}') / corpus
    for path in sorted(src.rglob('*.flac')):
        out = dst / path.relative_to(src)
        if out.exists():
            continue
        audio, rate = sf.read(path, dtype='float32', always_2d=True)
        y = tempo(audio.T, f).T
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, np.clip(y, -1, 1), rate, subtype='PCM_16')
    print(corpus, f, 'done', flush=True)
