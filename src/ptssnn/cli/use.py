"""Using a trained model: ``ptssnn train``, ``predict``, ``export`` and ``serve``.

A thin layer over :mod:`ptssnn.inference`, :mod:`ptssnn.export` and :mod:`ptssnn.serve`.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ptssnn.errors import PtssnnError
from ptssnn.jsonio import dumps as strict_json

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


def find_audio_files(paths: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and directories (recursively) into a sorted, de-duplicated file list.

    Files given explicitly are kept whatever their suffix; inside directories only files
    with an audio suffix (:data:`AUDIO_SUFFIXES`, case-insensitive) are taken and hidden
    files and folders are skipped.

    Returns:
        ``(files, problems)``: the files, and ``(path, reason)`` for every path that does not
        exist and every folder that could not be listed (permissions), so that the caller can
        report them and go on with the rest.
    """
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    for path in paths:
        if path.is_dir():
            found.extend(_walk_audio(path, problems))
        elif path.exists():
            found.append(path)
        elif path.is_symlink():
            problems.append((str(path), "is a broken symbolic link"))
        else:
            problems.append((str(path), "no such file or directory"))
    seen: set[Path] = set()
    unique = []
    for p in found:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique, problems


def _walk_audio(root: Path, problems: list[tuple[str, str]]) -> list[Path]:
    """Audio files under ``root``; folders that cannot be listed go to ``problems``."""

    def unreadable(error: OSError) -> None:
        where = error.filename or str(root)
        if isinstance(error, PermissionError):
            problems.append((where, "folder cannot be read: permission denied"))
        else:
            problems.append((where, f"folder cannot be read ({error.strerror or error})"))

    files: list[Path] = []
    visited: set[str] = set()
    for folder, subfolders, names in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a symbolic link back up the tree
            subfolders[:] = []
            continue
        visited.add(real)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in names:
            candidate = Path(folder) / name
            if (
                not name.startswith(".")
                and candidate.suffix.lower() in AUDIO_SUFFIXES
                and candidate.is_file()
            ):
                files.append(candidate)
    return sorted(files)


def enrol_clips(
    recognizer: Any,
    files: list[Path],
    *,
    profile: Any = None,
    name: str = "",
    console: Console | None = None,
) -> tuple[Any, list[tuple[str, str]]]:
    """Enrol audio files with a progress bar; bad files are skipped.

    Returns:
        ``(profile, skipped)`` with ``skipped`` as ``(file, reason)`` pairs.

    Raises:
        PtssnnError: When no file could be used.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    err = console or Console(stderr=True)
    skipped: list[tuple[str, str]] = []
    before = profile.clips if profile is not None else 0
    with Progress(TextColumn("enrol"), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task("enrol", total=len(files))

        def on_clip(source: str, error: Exception | None) -> None:
            if error is not None:
                skipped.append((source, str(error)))
                err.print(f"[yellow]skipped[/] {error}", highlight=False)
            progress.advance(task)

        profile = recognizer.enrol(files, profile=profile, name=name, skip_errors=True,
                                   on_clip=on_clip)
    if profile.clips == before:
        raise PtssnnError(f"none of the {len(files)} clip(s) could be enrolled")
    return profile, skipped


def _predict_one(
    recognizer: Any,
    path: Path,
    stream: bool,
    chunk_s: float,
    left_context_s: float,
    lookahead_s: float,
    segments: bool,
    profile: Any = None,
    on_update: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """One file's JSON record (offline prediction, or a streaming run with its updates).

    ``on_update`` sees each streaming update as its chunk is processed (the live label).
    """
    if not stream:
        return recognizer.predict_file(path, profile=profile).to_dict(include_segments=segments)
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
        chunk_s=chunk_s, left_context_s=left_context_s, lookahead_s=lookahead_s, profile=profile
    )
    # Chunk by chunk, as a live source would, so the running label can be shown as it changes.
    step = max(1, round(session.chunk_s * recognizer.sample_rate))
    updates = []
    for start in range(0, wave.size, step):
        updates.extend(session.push(wave[start : start + step], recognizer.sample_rate))
        if on_update is not None and updates:
            on_update(updates[-1])
    final = session.flush()
    if final is not None:
        updates.append(final)
        if on_update is not None:
            on_update(final)
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
    profile_path: Annotated[Path | None, typer.Option(
        "--profile", help="Speaker profile (`ptssnn enrol`): every file is that speaker.")] = None,
    enrol_from: Annotated[Path | None, typer.Option(
        "--enrol-from", help="Enrol the speaker from the unlabelled audio in this folder "
        "first, then predict every file with that profile.")] = None,
) -> None:
    """Recognise the emotion in audio files (directories are searched recursively).

    Missing paths, folders that cannot be read and bad files are reported (with the reason,
    e.g. "permission denied") and skipped; the rest is predicted. Exit status: 0 when every
    input was recognised, 1 when any was skipped, 2 when nothing could be read at all.
    """
    from ptssnn.inference import EmotionRecognizer

    if jsonl and table:
        raise PtssnnError("choose one of --jsonl and --table")
    if profile_path is not None and enrol_from is not None:
        raise PtssnnError("choose one of --profile and --enrol-from")
    _check_predict_options(window, hop, stream, chunk, left_context, lookahead, max_seconds)
    err = Console(stderr=True)
    files, missing = find_audio_files(paths)
    for where, reason in missing:
        err.print(f"[yellow]skipped[/] {where}: {reason}", highlight=False)
        if jsonl:
            print(strict_json({"source": where, "error": f"{where}: {reason}"}), flush=True)
    if not files:
        if missing:
            raise PtssnnError(
                "nothing to predict: " + "; ".join(f"{w}: {r}" for w, r in missing[:5])
            )
        raise PtssnnError(f"no audio files found in {', '.join(map(str, paths))}")
    recognizer = EmotionRecognizer.load(
        model_dir, window_s=window, hop_s=hop, max_seconds=max_seconds
    )
    if stream:
        try:  # the chunk must be whole feature frames: say so once, not per file
            recognizer.stream(chunk_s=chunk, left_context_s=left_context, lookahead_s=lookahead)
        except ValueError as error:
            raise PtssnnError(f"--chunk/--left-context/--lookahead: {error}") from error
    profile = None
    if profile_path is not None:
        from ptssnn.features.profile import SpeakerProfile

        profile = SpeakerProfile.load(profile_path)
        recognizer.moments_for(profile)  # a profile of another model: one clear error now
    elif enrol_from is not None:
        clips, unreadable = find_audio_files([enrol_from])
        if not clips:
            raise PtssnnError(f"no audio files found in {enrol_from}"
                              + "".join(f"; {w}: {r}" for w, r in unreadable[:5]))
        profile, skipped = enrol_clips(recognizer, clips, console=err)
        err.print(f"enrolled {profile.clips} clip(s) from {enrol_from}, skipped {len(skipped)}",
                  highlight=False)
    records: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    started = time.perf_counter()

    live: Any = None  # (progress, task) while a table-mode stream shows its running label

    def show(path: Path) -> Callable[[Any], None] | None:
        if live is None:
            return None
        progress, task = live

        def update(u: Any) -> None:
            confidence = u.probabilities[u.label]
            progress.update(task, description=f"{path.name} {u.end_s:6.1f} s: [bold]{u.label}[/] "
                            f"({confidence:.2f})")

        return update

    def handle(path: Path) -> None:
        try:
            record = _predict_one(
                recognizer, path, stream, chunk, left_context, lookahead, segments, profile,
                show(path),
            )
        except PtssnnError as error:
            failures.append((str(path), str(error)))
            err.print(f"[yellow]skipped[/] {error}", highlight=False)
            if jsonl:
                print(strict_json({"source": str(path), "error": str(error)}), flush=True)
            return
        records.append(record)
        if jsonl:
            print(strict_json(record), flush=True)

    if len(files) > 1 or (stream and not jsonl):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("predict", total=len(files))
            if stream and not jsonl:
                live = (progress, task)
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
    unsearched = (
        f"; {len(missing)} path{'s' if len(missing) != 1 else ''} missing or unreadable"
        if missing
        else ""
    )
    err.print(
        f"{len(records)} of {len(files)} files recognised, {len(failures)} skipped"
        f"{unsearched}; {audio:.1f} s of audio in {elapsed:.1f} s "
        f"({audio / max(elapsed, 1e-9):.1f}× real time); labels: "
        + (", ".join(f"{k} {v}" for k, v in counts.most_common()) or "-"),
        highlight=False,
    )
    if failures or missing:
        raise typer.Exit(1)


def _check_predict_options(
    window: float,
    hop: float,
    stream: bool,
    chunk: float,
    left_context: float,
    lookahead: float,
    max_seconds: float,
) -> None:
    """One-line errors for option values that would otherwise fail deep inside."""
    if not window > 0 or not hop > 0:
        raise PtssnnError(f"--window and --hop must be > 0, got {window} and {hop}")
    if hop > window:
        raise PtssnnError(f"--hop ({hop} s) longer than --window ({window} s) leaves gaps")
    if not max_seconds > 0:
        raise PtssnnError(f"--max-seconds must be > 0, got {max_seconds}")
    if stream and (not chunk > 0 or left_context < 0 or lookahead < 0):
        raise PtssnnError(
            f"--chunk must be > 0 and --left-context, --lookahead ≥ 0, got {chunk}, "
            f"{left_context}, {lookahead}"
        )


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
                          "(docs/export.md).")
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
    print(strict_json(report, indent=2))


def serve_command(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `ptssnn train`.")],
    host: Annotated[
        str,
        typer.Option(help="Interface to listen on (other than 127.0.0.1: set a token)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (1-65535).")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload (MB).")] = 20.0,
    max_seconds: Annotated[float, typer.Option(help="Longest recording (s).")] = 60.0,
    max_decoded_mb: Annotated[
        float,
        typer.Option(help="Largest decoded upload, frames x channels x 4 B, from the header (MB)."),
    ] = 100.0,
    max_concurrency: Annotated[
        int, typer.Option(help="Decodes + predictions running at once.")
    ] = 1,
    max_requests: Annotated[
        int, typer.Option(help="Requests in progress, uploads included (more get 503).")
    ] = 64,
    request_timeout: Annotated[
        float, typer.Option(help="Seconds an upload has to arrive (slower: 408).")
    ] = 30.0,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the bearer token clients must send (default: $PTSSNN_TOKEN; "
            "neither: no token)."
        ),
    ] = None,
    profiles: Annotated[
        Path | None,
        typer.Option(help="Folder of speaker profiles: enables /profiles (enrol from uploads, "
                     "add clips, delete) and /predict?profile=ID."),
    ] = None,
    max_profiles: Annotated[int, typer.Option(min=1, help="Most profiles kept.")] = 1000,
) -> None:
    """Serve the model over HTTP: POST /predict (audio upload), GET /health, /openapi.json.

    Errors are JSON {"error": {"code", "message"}}. With a token (--token-file or
    $PTSSNN_TOKEN) every request needs "Authorization: Bearer <token>".
    """
    from ptssnn.serve import check_port, read_token, serve

    token = read_token(token_file)
    # Cheap checks first: a bad limit or a busy port is one line, before the model loads.
    for name, value in (
        ("--max-upload-mb", max_upload_mb),
        ("--max-seconds", max_seconds),
        ("--max-decoded-mb", max_decoded_mb),
        ("--request-timeout", request_timeout),
    ):
        if not value > 0:
            raise PtssnnError(f"{name} must be > 0, got {value}")
    for name, count in (("--max-concurrency", max_concurrency), ("--max-requests", max_requests)):
        if count < 1:
            raise PtssnnError(f"{name} must be ≥ 1, got {count}")
    check_port(host, port)
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        Console(stderr=True).print(
            f"[yellow]warning[/] listening on {host} without a token: anyone who can reach "
            "this port can use the model (set $PTSSNN_TOKEN or --token-file)",
            highlight=False,
        )

    from ptssnn.inference import EmotionRecognizer

    recognizer = EmotionRecognizer.load(model_dir, max_seconds=max_seconds)
    serve(
        recognizer,
        host=host,
        port=port,
        max_upload_mb=max_upload_mb,
        max_seconds=max_seconds,
        max_concurrency=max_concurrency,
        max_decoded_mb=max_decoded_mb,
        request_timeout_s=request_timeout,
        max_requests=max_requests,
        token=token,
        profiles_dir=profiles,
        max_profiles=max_profiles,
    )


def train_command(
    corpora: Annotated[str, typer.Argument(help="Corpus name(s), comma-separated.")],
    data_root: Annotated[
        Path, typer.Option("--data-root", help="Folder holding the corpora (casia/, emovo/...).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    overwrite: Annotated[
        bool, typer.Option(help="Replace the model already in --out (refused otherwise).")
    ] = False,
    backbone: Annotated[str, typer.Option(help="Backbone name.")] = "whisper-base",
    preset: Annotated[str, typer.Option(help="Model preset.")] = "pts-snn",
    epochs: Annotated[int | None, typer.Option(help="Max epochs (default: trainer's).")] = None,
    exclude_speakers: Annotated[
        str, typer.Option(help="Speakers left out entirely, comma-separated (for held-out tests).")
    ] = "",
    layers: Annotated[
        str | None,
        typer.Option(
            help="Backbone layers: middle, auto, all, mean, mean:a-b or one index "
                 "(default: trainer's)."
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
    normalisation: Annotated[
        str, typer.Option(help="global (one clip at a time, no profiles needed), enrolled "
                          "(for use with speaker profiles: `ptssnn enrol`; works without one "
                          "too) or speaker.")
    ] = "global",
) -> None:
    """Train a deployable model on all speakers of the given corpora (minus validation)."""
    from ptssnn.training.deployment import train_recognizer

    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise PtssnnError(f"--out {out} already exists and is not empty: choose a new folder or "
                          "pass --overwrite to replace it")

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
        config_overrides={"num_threads": threads, "normalisation": normalisation}
        | ({"frame_pool": frame_pool} if frame_pool else {}),
        progress=sys.stderr.isatty(),
        log=lambda line: Console(stderr=True).print(line, highlight=False),
    )
    Console(stderr=True).print(_train_report(summary, out), highlight=False)


def _train_report(summary: dict[str, Any], out: Path) -> str:
    """What `train` wrote, and scores that say which model they belong to."""
    held_out, validation_ua = summary["held_out"], summary["validation"]["ua"]
    refit = summary["fit"].get("refit")
    lines = [
        f"model written to {out}: {summary['num_train']} training / "
        f"{summary['num_validation']} validation utterances, labels "
        f"{', '.join(summary['labels'])}"
    ]
    if refit:
        # The written model saw the validation speakers: its score on them is no test score.
        lines.append(
            f"  validation UA {validation_ua:.3f} is the epoch-selection run's; the written model "
            f"was then retrained on training + validation for {refit['epochs']} epochs"
        )
    else:
        lines.append(f"  validation UA {validation_ua:.3f} (of the written model)")
    if held_out:
        lines.append(
            f"  written model on the held-out speakers ({summary['num_held_out']} utterances): "
            f"WA {held_out['wa']:.4f}, UA {held_out['ua']:.4f}"
        )
    elif refit:
        lines.append("  (no unseen-speaker score of the written model: hold speakers out with "
                     "--exclude-speakers to get one)")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add ``train``, ``predict``, ``export`` and ``serve`` to the main app."""
    app.command("train")(train_command)
    app.command("predict")(predict_command)
    app.command("export")(export_command)
    app.command("serve")(serve_command)
