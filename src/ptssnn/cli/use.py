"""Using a trained model: ``ptssnn train``, ``predict``, ``export`` and ``serve``.

A thin layer over :mod:`ptssnn.inference`, :mod:`ptssnn.export` and :mod:`ptssnn.serve`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ptssnn.errors import PtssnnError

#: File suffixes picked up when a directory is given to ``ptssnn predict`` (libsndfile's
#: formats); a file named explicitly is always tried, whatever its name.
AUDIO_SUFFIXES = frozenset(
    {
        ".wav",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
        ".sd2",
        ".voc",
        ".nist",
        ".sph",
        ".htk",
        ".paf",
        ".pvf",
        ".svx",
        ".ircam",
        ".mat",
        ".xi",
        ".wve",
        ".avr",
        ".mpc",
    }
)


def find_audio_files(paths: list[Path]) -> list[Path]:
    """Expand files and directories (recursively) into a sorted, de-duplicated file list.

    Files given explicitly are kept whatever their suffix; inside directories only files
    with an audio suffix (:data:`AUDIO_SUFFIXES`, case-insensitive) are taken and hidden
    files are skipped.

    Raises:
        PtssnnError: A path that does not exist.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file()
                    and p.suffix.lower() in AUDIO_SUFFIXES
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        elif path.exists():
            found.append(path)
        else:
            raise PtssnnError(f"{path}: no such file or directory")
    seen: set[Path] = set()
    unique = []
    for p in found:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def _predict_one(
    recognizer: Any,
    path: Path,
    stream: bool,
    chunk_s: float,
    left_context_s: float,
    lookahead_s: float,
    segments: bool,
) -> dict[str, Any]:
    """One file's JSON record (offline prediction, or a streaming run with its updates)."""
    if not stream:
        return recognizer.predict_file(path).to_dict(include_segments=segments)
    from ptssnn.audio import load_audio
    from ptssnn.inference.recognizer import MIN_SECONDS

    wave = load_audio(
        path,
        sample_rate=recognizer.sample_rate,
        max_seconds=recognizer.max_seconds,
        min_seconds=MIN_SECONDS,
        long_policy="error",
    )
    session = recognizer.stream(
        chunk_s=chunk_s, left_context_s=left_context_s, lookahead_s=lookahead_s
    )
    updates = session.run(wave, recognizer.sample_rate)
    last = updates[-1]
    latencies = [u.latency_ms for u in updates]
    audio_s = wave.size / recognizer.sample_rate
    record: dict[str, Any] = {
        "source": str(path),
        "label": last.label,
        "confidence": round(last.probabilities[last.label], 6),
        "probabilities": {k: round(v, 6) for k, v in last.probabilities.items()},
        "duration_s": round(audio_s, 4),
        "streaming": {
            "chunk_s": session.chunk_s,
            "left_context_s": session.left_context_s,
            "lookahead_s": session.lookahead_s,
            "chunks": len(updates),
            "latency_ms_mean": round(sum(latencies) / len(latencies), 3),
            "latency_ms_max": round(max(latencies), 3),
            "real_time_factor": round(sum(latencies) / 1000 / audio_s, 4),
        },
    }
    if segments:
        record["updates"] = [u.to_dict() for u in updates]
    return record


def predict_command(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `ptssnn train`.")],
    paths: Annotated[list[Path], typer.Argument(help="Audio files and/or directories.")],
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per file.")] = False,
    table: Annotated[bool, typer.Option("--table", help="A table (the default).")] = False,
    window: Annotated[float, typer.Option(help="Analysis window for long audio (s).")] = 8.0,
    hop: Annotated[float, typer.Option(help="Hop between analysis windows (s).")] = 4.0,
    stream: Annotated[
        bool, typer.Option("--stream", help="Stream each file chunk by chunk (running label).")
    ] = False,
    chunk: Annotated[float, typer.Option(help="Streaming chunk length (s).")] = 0.5,
    left_context: Annotated[
        float, typer.Option(help="Streaming: audio re-encoded before each chunk (s).")
    ] = 2.0,
    lookahead: Annotated[
        float, typer.Option(help="Streaming: audio after each chunk the backbone sees (s).")
    ] = 0.0,
    max_seconds: Annotated[float, typer.Option(help="Longest accepted recording (s).")] = 600.0,
    segments: Annotated[
        bool, typer.Option(help="Include per-window segments / streaming updates in JSON.")
    ] = True,
) -> None:
    """Recognise the emotion in audio files (directories are searched recursively).

    Bad files are reported and skipped; the exit status is 1 when any file failed.
    """
    from ptssnn.inference import EmotionRecognizer

    if jsonl and table:
        raise PtssnnError("choose one of --jsonl and --table")
    err = Console(stderr=True)
    files = find_audio_files(paths)
    if not files:
        raise PtssnnError(f"no audio files found in {', '.join(map(str, paths))}")
    recognizer = EmotionRecognizer.load(
        model_dir, window_s=window, hop_s=hop, max_seconds=max_seconds
    )
    records: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    started = time.perf_counter()

    def handle(path: Path) -> None:
        try:
            record = _predict_one(
                recognizer, path, stream, chunk, left_context, lookahead, segments
            )
        except PtssnnError as error:
            failures.append((str(path), str(error)))
            err.print(f"[yellow]skipped[/] {error}", highlight=False)
            if jsonl:
                print(json.dumps({"source": str(path), "error": str(error)}), flush=True)
            return
        records.append(record)
        if jsonl:
            print(json.dumps(record), flush=True)

    if len(files) > 1:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("predict"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("predict", total=len(files))
            for path in files:
                handle(path)
                progress.advance(task)
    else:
        handle(files[0])
    elapsed = time.perf_counter() - started

    if not jsonl:
        out = Console()
        # Paths relative to the files' common folder keep the table narrow.
        common = Path(os.path.commonpath([str(p.parent.resolve()) for p in files]))
        grid = Table(
            title=f"{len(records)} predictions ({'streaming' if stream else 'offline'}) in {common}"
        )
        grid.add_column("file", overflow="fold")
        grid.add_column("label")
        for column in ("confidence", "duration (s)", "segments"):
            grid.add_column(column, justify="right")
        for r in records:
            pieces = len(r.get("segments", r.get("updates", []))) or "-"
            name = os.path.relpath(Path(r["source"]).resolve(), common)
            grid.add_row(
                name, r["label"], f"{r['confidence']:.3f}", f"{r['duration_s']:.2f}", str(pieces)
            )
        out.print(grid)
    audio = sum(r["duration_s"] for r in records)
    counts = Counter(r["label"] for r in records)
    err.print(
        f"{len(records)} of {len(files)} files recognised, {len(failures)} skipped; "
        f"{audio:.1f} s of audio in {elapsed:.1f} s ({audio / max(elapsed, 1e-9):.1f}× real "
        f"time); labels: " + (", ".join(f"{k} {v}" for k, v in counts.most_common()) or "-"),
        highlight=False,
    )
    if failures:
        raise typer.Exit(1)


def export_command(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `ptssnn train`.")],
    kind: Annotated[str, typer.Option("--format", help="onnx or nir.")] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output: a file for onnx (default head.onnx), a directory "
                     "for nir (default head-nir, or head-nir-TARGET)."),
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    target: Annotated[
        str, typer.Option(help="NIR conventions: nir, snntorch, norse or sinabs "
                          "(docs/neuromorphic.md).")
    ] = "nir",
    dt: Annotated[
        float | None,
        typer.Option("--dt", help="NIR: seconds per step written into every LIF (default: the "
                     "target's time base, else one head frame)."),
    ] = None,
) -> None:
    """Export the head: ONNX (features + mask → logits) or NIR (spiking core + host program).

    Prints a JSON report (file, shapes or NIR segments, and the round-trip difference).
    """
    from ptssnn.export import export_nir, export_onnx
    from ptssnn.models import load_pretrained

    kind = kind.lower()
    if kind not in ("onnx", "nir"):
        raise PtssnnError(f"unknown export format {kind!r}: use onnx or nir")
    if kind == "onnx" and (dt is not None or target != "nir"):
        raise PtssnnError("--target and --dt apply to --format nir only")
    model, metadata = load_pretrained(model_dir)
    if kind == "onnx":
        report = export_onnx(model, out or Path("head.onnx"), opset=opset, metadata=metadata)
    else:
        default = Path("head-nir" if target == "nir" else f"head-nir-{target}")
        report = export_nir(model, out or default, target=target, dt=dt, metadata=metadata)
    # Plain print: a rich console would wrap long paths and break the JSON.
    print(json.dumps(report, indent=2))


def serve_command(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `ptssnn train`.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload (MB).")] = 20.0,
    max_seconds: Annotated[float, typer.Option(help="Longest recording (s).")] = 60.0,
    max_concurrency: Annotated[int, typer.Option(help="Predictions running at once.")] = 1,
) -> None:
    """Serve the model over HTTP: POST /predict (audio upload), GET /health, /docs."""
    from ptssnn.inference import EmotionRecognizer
    from ptssnn.serve import serve

    recognizer = EmotionRecognizer.load(model_dir, max_seconds=max_seconds)
    serve(
        recognizer,
        host=host,
        port=port,
        max_upload_mb=max_upload_mb,
        max_seconds=max_seconds,
        max_concurrency=max_concurrency,
    )


def train_command(
    corpora: Annotated[str, typer.Argument(help="Corpus name(s), comma-separated.")],
    data_root: Annotated[
        Path, typer.Option("--data-root", help="Folder holding the corpora (casia/, emovo/...).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    backbone: Annotated[str, typer.Option(help="Backbone name.")] = "whisper-base",
    preset: Annotated[str, typer.Option(help="Model preset.")] = "pts-snn",
    epochs: Annotated[int | None, typer.Option(help="Max epochs (default: trainer's).")] = None,
    exclude_speakers: Annotated[
        str, typer.Option(help="Speakers left out entirely, comma-separated (for held-out tests).")
    ] = "",
    layers: Annotated[
        str | None,
        typer.Option(
            help="Backbone layers: auto, all, mean, mean:a-b or one index (default: trainer's)."
        ),
    ] = None,
    frame_pool: Annotated[
        int | None,
        typer.Option(min=1, help="Average groups of N frames before the head (default: trainer's)"),
    ] = None,
    validation_speakers: Annotated[
        str, typer.Option(help="Validation speakers (default: chosen per corpus).")
    ] = "",
    cache: Annotated[Path | None, typer.Option(help="Feature cache directory.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[
        int, typer.Option(min=1, help="torch threads (1, as the benchmark: see its README).")
    ] = 1,
) -> None:
    """Train a deployable model on all speakers of the given corpora (minus validation)."""
    from ptssnn.inference.training import train_recognizer

    summary = train_recognizer(
        [c.strip() for c in corpora.split(",") if c.strip()],
        data_root=data_root,
        out=out,
        backbone=backbone,
        preset=preset,
        epochs=epochs,
        exclude_speakers=[s.strip() for s in exclude_speakers.split(",") if s.strip()],
        validation_speakers=[s.strip() for s in validation_speakers.split(",") if s.strip()],
        layers=layers,
        cache_dir=cache,
        seed=seed,
        config_overrides={"num_threads": threads}
        | ({"frame_pool": frame_pool} if frame_pool else {}),
        progress=sys.stderr.isatty(),
        log=lambda line: Console(stderr=True).print(line, highlight=False),
    )
    held_out = summary["held_out"]
    Console(stderr=True).print(
        f"model written to {out}: {summary['num_train']} training / {summary['num_validation']}"
        f" validation utterances, validation UA {summary['validation']['ua']:.3f}, "
        f"labels {', '.join(summary['labels'])}"
        + (
            f"; held-out speakers ({summary['num_held_out']} utterances): WA "
            f"{held_out['wa']:.4f}, UA {held_out['ua']:.4f}"
            if held_out
            else ""
        ),
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``train``, ``predict``, ``export`` and ``serve`` to the main app."""
    app.command("train")(train_command)
    app.command("predict")(predict_command)
    app.command("export")(export_command)
    app.command("serve")(serve_command)
