"""Measure a real ``ptssnn serve`` process against a decompression bomb (issue 14, item 1).

Builds a tiny random model (fbank backbone), starts ``python -m ptssnn.cli serve`` on
127.0.0.1, posts a small FLAC whose header declares 8 channels x RATE Hz x SECONDS s, and
prints the server's peak RSS (VmHWM from /proc) before and after, with the answer.

    PYTHONPATH=src python scripts/serve_bomb_rss.py [--rate 655350] [--seconds 59] [--copies 3]
        [--max-concurrency 4]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf


def bomb(rate: int, seconds: int, channels: int = 8) -> bytes:
    """A constant signal compresses to almost nothing in FLAC."""
    buffer = io.BytesIO()
    block = np.full((rate, channels), 0.25, np.float32)
    with sf.SoundFile(buffer, "w", rate, channels, format="FLAC", subtype="PCM_16") as out:
        for _ in range(seconds):
            out.write(block)
    return buffer.getvalue()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=655350)
    parser.add_argument("--seconds", type=int, default=59)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--max-concurrency", type=int, default=4)
    args = parser.parse_args()

    import torch

    from ptssnn.backbones import load_backbone
    from ptssnn.inference import ModelCard, save_recognizer
    from ptssnn.models import create_model

    torch.manual_seed(0)
    backbone = load_backbone("fbank")
    model = create_model("pts-snn", input_dim=backbone.hidden_size, num_classes=3, width=64,
                         block_hidden=128)
    card = ModelCard(labels=("angry", "neutral", "sad"), backbone=backbone.name,
                     backbone_identity=backbone.identity(), layers="0", preset="pts-snn")
    folder = Path(tempfile.mkdtemp(prefix="ptssnn-bomb-"))
    save_recognizer(model, folder / "model", card, {"note": "random"})

    data = bomb(args.rate, args.seconds)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "ptssnn", "serve", str(folder / "model"), "--port", str(port),
         "--max-concurrency", str(args.max_concurrency)],
        env=os.environ | {"OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("server did not start") from None
                time.sleep(0.2)
        before = peak_rss_mb(server.pid)

        def send(_: int) -> httpx.Response:
            return httpx.post(f"{url}/predict", files={"file": ("bomb.flac", data)}, timeout=600)

        with ThreadPoolExecutor(args.copies) as pool:
            answers = list(pool.map(send, range(args.copies)))
        after = peak_rss_mb(server.pid)
        print(f"bomb: {len(data) / 1e3:.0f} kB FLAC, 8 ch x {args.rate} Hz x {args.seconds} s, "
              f"{args.copies} at once, --max-concurrency {args.max_concurrency}")
        print(f"server peak RSS before {before:.0f} MB, after {after:.0f} MB")
        print(f"answer: {answers[0].status_code} {answers[0].text[:300]}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
