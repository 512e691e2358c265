"""Using a trained model: ``ptssnn predict`` on files, folders and streams.

A thin layer over :mod:`ptssnn.inference` (``train``, ``export`` and ``serve`` live in
:mod:`ptssnn.cli.deploy`).
"""

from __future__ import annotations

import os
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


def register(app: typer.Typer) -> None:
    """Add ``predict`` to the ``ptssnn`` command line."""
    app.command("predict")(predict_command)
