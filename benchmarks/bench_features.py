"""Feature extraction throughput (× real time) and peak memory per backbone, 1 and 2 processes.

    .venv/bin/python benchmarks/bench_features.py [--per-corpus 40] [--backbones fbank,...] \
        [--out benchmarks/results/features.json]

Each measurement extracts a fixed subset of the shared corpora (every k-th utterance of CASIA,
EMOVO and URDU, so three languages and the real length mix) into a fresh temporary cache with
``extract_features`` (decode + content hash + backbone + fp16 write, all layers), and reports:

* × real time: seconds of audio extracted per wall-clock second of the extraction call;
* peak memory: the largest resident set size (``ru_maxrss``) of a process, and the sum over
  processes for the two-process runs;
* the load average before and after, since the 2-core machine may be shared.

Configurations (``--configs``, processes x threads, default ``1x1,2x1``): one process with one
thread (the CLI's default), and two processes with one thread each under
``torch.distributed.run`` (torchrun, gloo), sharding the utterances. ``1x2`` (torch's own
default on this machine) can be asked for; on a busy machine it is many times slower.
Besides wall-clock × real time, each row gives audio seconds per CPU-second of the
processes, which depends much less on other users of a shared machine.
Whisper runs unpadded (the default); ``--padded`` adds a 30 s-padded whisper-base row on a
smaller subset. Data: ``../shared/data`` or ``$PTSSNN_DATA``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

DEFAULT_BACKBONES = ("fbank", "whisper-tiny.en", "whisper-base")
CORPORA = ("casia", "emovo", "urdu")


def data_root() -> Path:
    override = os.environ.get("PTSSNN_DATA")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"


def subset(per_corpus: int) -> list[Any]:
    """Every k-th utterance of each corpus, ``per_corpus`` from each (deterministic)."""
    from ptssnn.corpora import scan_corpus

    chosen = []
    for corpus in CORPORA:
        folder = data_root() / corpus
        if not folder.is_dir():
            continue
        utterances = scan_corpus(corpus, folder).utterances
        step = max(1, len(utterances) // per_corpus)
        chosen.extend(utterances[::step][:per_corpus])
    if not chosen:
        raise SystemExit(f"no corpora under {data_root()}; set PTSSNN_DATA")
    return chosen


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_once(backbone_name: str, padding: str, per_corpus: int, cache: Path) -> dict[str, Any]:
    """Extract the subset in this process (or this torchrun rank); returns its measurements."""
    from ptssnn.backbones import load_backbone
    from ptssnn.features import ProcessGroup, extract_features

    utterances = subset(per_corpus)
    group = ProcessGroup.from_environment()
    loaded = time.perf_counter()
    backbone = load_backbone(backbone_name, padding=padding)
    load_seconds = time.perf_counter() - loaded
    try:
        cpu_before = cpu_seconds()
        features = extract_features(
            utterances, backbone, "all", cache, progress=False, process_group=group
        )
        cpu = group.all_gather(cpu_seconds() - cpu_before)
        rss = group.all_gather(peak_rss_mb())
    finally:
        group.close()
    report = features.report
    audio = report.extracted_audio_seconds
    return {
        "backbone": backbone_name,
        "padding": padding,
        "processes": report.processes,
        "threads_per_process": torch.get_num_threads(),
        "utterances": report.total,
        "extracted": report.extracted,
        "failed": report.failed,
        "audio_seconds": round(report.extracted_audio_seconds, 2),
        "wall_seconds": round(report.wall_seconds, 2),
        "x_real_time": round(report.real_time_factor, 1),
        "cpu_seconds": round(sum(cpu), 2),
        # Audio seconds per CPU-second: what a dedicated core would give (threads that spin
        # waiting for each other count too), less sensitive to other users of the machine.
        "x_real_time_per_cpu": round(audio / sum(cpu), 1) if sum(cpu) else 0.0,
        "load_backbone_seconds": round(load_seconds, 2),
        "peak_rss_mb_per_process": [round(r) for r in rss],
        "peak_rss_mb_total": round(sum(rss)),
        "cache_mb_per_hour": round(report.bytes_per_hour / 1e6, 1),
        "rank": group.rank,
    }


def measure(
    backbone: str, padding: str, per_corpus: int, processes: int, threads: int
) -> dict[str, Any]:
    """One measurement in fresh subprocesses (so peak memory is this backbone's alone)."""
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        out = Path(tmp) / "result.json"
        worker = [
            str(Path(__file__).resolve()),
            "--worker",
            "--backbones",
            backbone,
            "--padding",
            padding,
            "--per-corpus",
            str(per_corpus),
            "--cache",
            str(Path(tmp) / "cache"),
            "--out",
            str(out),
        ]
        if processes == 1:
            command = [sys.executable, *worker]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            command += ["--nproc_per_node", str(processes), *worker]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(command, check=True, env=env)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default=",".join(DEFAULT_BACKBONES))
    parser.add_argument("--per-corpus", type=int, default=40)
    parser.add_argument(
        "--configs",
        default="1x1,2x1",
        help="processes x threads per process, comma separated",
    )
    parser.add_argument("--padded", action="store_true", help="add a 30 s-padded whisper-base row")
    parser.add_argument("--padding", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "features.json"
    )
    args = parser.parse_args()

    if args.worker:
        result = run_once(args.backbones, args.padding, args.per_corpus, args.cache)
        if result["rank"] == 0:
            args.out.write_text(json.dumps(result))
        return

    rows = []
    load_before = os.getloadavg()
    configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
    plan = [
        (name, "none", args.per_corpus, processes, threads)
        for name in args.backbones.split(",")
        for processes, threads in configs
    ]
    if args.padded:
        plan.append(("whisper-base", "30s", max(2, args.per_corpus // 8), 1, 1))
    for name, padding, per_corpus, processes, threads in plan:
        row = measure(name, padding, per_corpus, processes, threads)
        rows.append(row)
        print(
            f"{name:16s} padding={padding:4s} {processes} process(es) x {threads} thread(s) "
            f"{row['x_real_time']:8.1f}× real time ({row['x_real_time_per_cpu']:.1f}× per CPU-s)  "
            f"peak RSS {row['peak_rss_mb_total']} MB "
            f"({row['audio_seconds']:.0f} s audio in {row['wall_seconds']:.1f} s)",
            flush=True,
        )
    result = {
        "benchmark": "feature extraction (decode + hash + backbone + fp16 write, all layers)",
        "command": "python " + " ".join(sys.argv),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "shared": True,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "corpora": list(CORPORA),
        "rows": rows,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
