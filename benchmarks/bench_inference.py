"""Inference speed on one CPU core: whisper-base + PTS-SNN head, end to end and streaming.

    .venv/bin/python benchmarks/bench_inference.py [--model-dir DIR] [--clips 12] \
        [--out benchmarks/results/inference.json]
    .venv/bin/python benchmarks/bench_inference.py --model-dir DIR --agreement FOLDER \
        [--cli-jsonl FILE] [--http URL] [--out benchmarks/results/agreement.json]

* End to end, 5 s clips: audio → whisper-base (unpadded) → head → probabilities, via
  ``EmotionRecognizer.predict``; reported as × real time with the backbone/head split.
* Streaming: ``EmotionRecognizer.stream`` (0.5 s chunks, 2 s left context) over 10 s
  recordings; latency per chunk (mean, p50, p95, max) and the real-time factor.

``--agreement FOLDER`` instead scores every audio file under FOLDER (label = the parent
folder's name, e.g. CASIA's ``<speaker>/<emotion>/*.flac``): offline accuracy, streaming vs
offline label agreement, and, when given, agreement with ``ptssnn predict --jsonl`` output
and with a running ``ptssnn serve``.

Audio: real CASIA clips from ``../shared/data`` (or ``$PTSSNN_DATA``) joined to the needed
length, else a synthetic voiced signal. Without ``--model-dir`` a randomly initialised
``pts-snn`` head reading all 7 whisper-base hidden states is used: speed does not depend on
the weights, only on the architecture. One thread (``torch.set_num_threads(1)``); the script
records the load average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RATE = 16000


def audio_source(seconds: float, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` recordings of ``seconds`` each: CASIA speech joined end to end if available."""
    root = Path(
        os.environ.get("PTSSNN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    files = sorted((root / "casia").rglob("*.flac")) if (root / "casia").is_dir() else []
    need = int(seconds * RATE)
    out = []
    if files:
        from ptssnn.audio import load_audio

        rng = np.random.default_rng(seed)
        order = rng.permutation(len(files))
        pieces: list[np.ndarray] = []
        i = 0
        while len(out) < count:
            pieces.append(load_audio(files[order[i % len(files)]]))
            i += 1
            joined = np.concatenate(pieces)
            if joined.size >= need:
                out.append(joined[:need].copy())
                pieces = []
        return out
    rng = np.random.default_rng(seed)
    t = np.arange(need) / RATE
    for k in range(count):
        pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + k)
        phase = 2 * np.pi * np.cumsum(pitch) / RATE
        wave = sum(np.sin(h * phase) / h for h in range(1, 8)) + 0.05 * rng.standard_normal(need)
        out.append((0.3 * wave / np.abs(wave).max()).astype(np.float32))
    return out


def random_model_dir(backbone_name: str, preset: str) -> Path:
    """A model directory with a randomly initialised head (speed only)."""
    from ptssnn.backbones import load_backbone
    from ptssnn.features import FeaturePipeline
    from ptssnn.inference import ModelCard, save_recognizer
    from ptssnn.models import create_model

    backbone = load_backbone(backbone_name)
    torch.manual_seed(0)
    layers = backbone.num_hidden_states
    model = create_model(preset, input_dim=backbone.hidden_size, num_classes=6, input_layers=layers)
    card = ModelCard(
        labels=("angry", "fear", "happy", "neutral", "sad", "surprise"),
        backbone=backbone.name,
        backbone_identity=json.loads(json.dumps(backbone.identity(), default=str)),
        pipeline=FeaturePipeline(layers="all"),
        preset=preset,
    )
    return save_recognizer(model, Path(tempfile.mkdtemp(prefix="bench-model-")), card)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def agreement(args: argparse.Namespace) -> dict:
    """Offline accuracy, streaming/offline agreement and Python = CLI = HTTP on a folder."""
    from ptssnn.audio import load_audio
    from ptssnn.cli.use import find_audio_files
    from ptssnn.inference import EmotionRecognizer

    recognizer = EmotionRecognizer.load(args.model_dir)
    files = find_audio_files([args.agreement])
    cli = {}
    if args.cli_jsonl:
        for line in args.cli_jsonl.read_text().splitlines():
            record = json.loads(line)
            cli[str(Path(record["source"]).resolve())] = record
    client = None
    if args.http:
        import httpx

        client = httpx.Client(base_url=args.http, timeout=120)
    rows = []
    latencies: list[float] = []
    audio_s = processing_s = 0.0
    for path in files:
        offline = recognizer.predict_file(path)
        session = recognizer.stream(
            chunk_s=args.chunk, left_context_s=args.left_context, lookahead_s=args.lookahead
        )
        wave = load_audio(path)
        updates = session.run(wave, RATE)
        latencies += [u.latency_ms for u in updates]
        audio_s += wave.size / RATE
        processing_s += sum(u.latency_ms for u in updates) / 1000
        row = {
            "file": str(path),
            "reference": path.parent.name.lower(),
            "offline": offline.label,
            "streaming": updates[-1].label,
            "offline_probabilities": offline.probabilities,
        }
        record = cli.get(str(path.resolve()))
        if record is not None:
            row["cli"] = record["label"]
            row["cli_max_abs_diff"] = max(
                abs(record["probabilities"][k] - v) for k, v in offline.probabilities.items()
            )
        if client is not None:
            body = client.post("/predict", files={"file": (path.name, path.read_bytes())}).json()
            row["http"] = body["label"]
            row["http_max_abs_diff"] = max(
                abs(body["probabilities"][k] - v) for k, v in offline.probabilities.items()
            )
        rows.append(row)
    n = len(rows)
    scored = [r for r in rows if r["reference"] in recognizer.labels]
    result = {
        "benchmark": "agreement",
        "model_dir": str(args.model_dir),
        "folder": str(args.agreement),
        "clips": n,
        "offline_accuracy": sum(r["offline"] == r["reference"] for r in scored)
        / max(len(scored), 1),
        "streaming_accuracy": sum(r["streaming"] == r["reference"] for r in scored)
        / max(len(scored), 1),
        "streaming_offline_agreement": sum(r["streaming"] == r["offline"] for r in rows) / n,
        "streaming": {
            "chunk_s": args.chunk,
            "left_context_s": args.left_context,
            "lookahead_s": args.lookahead,
            "latency_ms_mean": statistics.fmean(latencies),
            "latency_ms_p95": percentile(latencies, 95),
            "real_time_factor": processing_s / audio_s,
        },
        "threads": torch.get_num_threads(),
    }
    if cli:
        with_cli = [r for r in rows if "cli" in r]
        result["cli_clips"] = len(with_cli)
        result["cli_label_agreement"] = sum(r["cli"] == r["offline"] for r in with_cli) / max(
            len(with_cli), 1
        )
        result["cli_max_abs_diff"] = max((r["cli_max_abs_diff"] for r in with_cli), default=None)
    if client is not None:
        result["http_label_agreement"] = sum(r["http"] == r["offline"] for r in rows) / n
        result["http_max_abs_diff"] = max(r["http_max_abs_diff"] for r in rows)
    if args.keep_rows:
        result["rows"] = [
            {k: v for k, v in r.items() if k != "offline_probabilities"} for r in rows
        ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--backbone", default="whisper-base")
    parser.add_argument("--preset", default="pts-snn")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--clip-seconds", type=float, default=5.0)
    parser.add_argument("--stream-seconds", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--chunk", type=float, default=0.5)
    parser.add_argument("--left-context", type=float, default=2.0)
    parser.add_argument("--lookahead", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--agreement", type=Path, default=None, help="score every clip under this folder"
    )
    parser.add_argument("--cli-jsonl", type=Path, default=None)
    parser.add_argument("--http", default=None, help="base URL of a running ptssnn serve")
    parser.add_argument("--keep-rows", action="store_true", help="per-clip rows in the JSON")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    results = Path(__file__).parent / "results"
    if args.agreement is not None:
        if args.model_dir is None:
            parser.error("--agreement needs --model-dir")
        report = agreement(args)
        out = args.out or results / "agreement.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))
        return
    args.out = args.out or results / "inference.json"
    from ptssnn.inference import EmotionRecognizer

    model_dir = args.model_dir or random_model_dir(args.backbone, args.preset)
    recognizer = EmotionRecognizer.load(model_dir)
    clips = audio_source(args.clip_seconds, args.clips + 2)
    for wave in clips[:2]:  # warm-up (allocator, first-call overheads)
        recognizer.predict(wave, RATE)
    runs = []
    cpu_seconds = 0.0
    for wave in clips[2:]:
        cpu = time.process_time()
        runs.append(recognizer.predict(wave, RATE).timings)
        cpu_seconds += time.process_time() - cpu
    backbone_ms = [t.backbone_ms for t in runs]
    head_ms = [t.head_ms for t in runs]
    total_ms = [t.total_ms for t in runs]
    offline = {
        "clip_seconds": args.clip_seconds,
        "clips": len(runs),
        "backbone_ms_mean": statistics.fmean(backbone_ms),
        "head_ms_mean": statistics.fmean(head_ms),
        "total_ms_mean": statistics.fmean(total_ms),
        "total_ms_p95": percentile(total_ms, 95),
        "times_real_time": args.clip_seconds * 1000 / statistics.fmean(total_ms),
        "backbone_share": statistics.fmean(backbone_ms) / statistics.fmean(total_ms),
        "head_times_real_time": args.clip_seconds * 1000 / statistics.fmean(head_ms),
        # CPU time of this process: much less sensitive to other users of a shared machine.
        "times_real_time_per_cpu_s": args.clip_seconds * len(runs) / cpu_seconds,
    }

    streams = audio_source(args.stream_seconds, args.streams, seed=1)
    latencies: list[float] = []
    stream_backbone: list[float] = []
    stream_head: list[float] = []
    audio_s = processing_s = stream_cpu = 0.0
    for wave in streams:
        session = recognizer.stream(
            chunk_s=args.chunk, left_context_s=args.left_context, lookahead_s=args.lookahead
        )
        cpu = time.process_time()
        updates = session.run(wave, RATE)
        stream_cpu += time.process_time() - cpu
        latencies += [u.latency_ms for u in updates]
        stream_backbone += [u.backbone_ms for u in updates]
        stream_head += [u.head_ms for u in updates]
        audio_s += wave.size / RATE
        processing_s += sum(u.latency_ms for u in updates) / 1000
    streaming = {
        "chunk_s": args.chunk,
        "left_context_s": args.left_context,
        "lookahead_s": args.lookahead,
        "streams": len(streams),
        "stream_seconds": args.stream_seconds,
        "chunks": len(latencies),
        "latency_ms_mean": statistics.fmean(latencies),
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "latency_ms_max": max(latencies),
        "backbone_ms_mean": statistics.fmean(stream_backbone),
        "head_ms_mean": statistics.fmean(stream_head),
        "real_time_factor": processing_s / audio_s,
        "real_time_factor_cpu": stream_cpu / audio_s,
        "worst_case_label_delay_s": args.chunk + args.lookahead + max(latencies) / 1000,
    }
    result = {
        "benchmark": "inference",
        "backbone": recognizer.card.backbone,
        "preset": recognizer.card.preset,
        "layers": recognizer.card.layers,
        "model_dir": str(model_dir) if args.model_dir else "random weights",
        "threads": torch.get_num_threads(),
        "offline": offline,
        "streaming": streaming,
        "target_times_real_time": 10.0,
        "meets_target": offline["times_real_time"] >= 10.0,
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
            "python": platform.python_version(),
            "torch": torch.__version__,
            "processor": platform.processor() or platform.machine(),
        },
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    o, s = offline, streaming
    print(
        f"offline {o['clip_seconds']:g} s clips: {o['times_real_time']:.1f}× real time "
        f"({o['times_real_time_per_cpu_s']:.1f}× per CPU-second) "
        f"(total {o['total_ms_mean']:.1f} ms = backbone {o['backbone_ms_mean']:.1f} ms + head "
        f"{o['head_ms_mean']:.1f} ms; backbone {100 * o['backbone_share']:.0f}%)\n"
        f"streaming {s['chunk_s']:g} s chunks, {s['left_context_s']:g} s context: latency mean "
        f"{s['latency_ms_mean']:.1f} ms, p95 {s['latency_ms_p95']:.1f} ms, max "
        f"{s['latency_ms_max']:.1f} ms; real-time factor {s['real_time_factor']:.3f} "
        f"({s['real_time_factor_cpu']:.3f} in CPU time)\n"
        f"written to {args.out}"
    )


if __name__ == "__main__":
    main()
