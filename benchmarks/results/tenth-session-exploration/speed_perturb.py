"""Scratch: speed-perturbed copies of a corpus (Kaldi-style: resample by 1/f, play at 16 kHz:
tempo and pitch both scale by f), same layout and names, under runs/s10/sp/f<f>/<corpus>."""
import sys
from pathlib import Path
import soundfile as sf, soxr

corpus, factors = sys.argv[1], [float(x) for x in sys.argv[2].split(',')]
src = Path('../shared/data') / corpus
for f in factors:
    dst = Path(f'runs/s10/sp/f{f}') / corpus
    for path in sorted(src.rglob('*.flac')):
        out = dst / path.relative_to(src)
        if out.exists():
            continue
        audio, rate = sf.read(path, dtype='float32')
        y = soxr.resample(audio, rate, rate / f, quality='VHQ')
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, y, rate, subtype='PCM_16')
    print(corpus, f, 'done', flush=True)
