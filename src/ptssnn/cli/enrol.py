"""``ptssnn enrol``: a speaker profile from unlabelled clips of one speaker.

A thin layer over :meth:`ptssnn.inference.EmotionRecognizer.enrol`; ``ptssnn predict
--profile`` / ``--enrol-from`` use the profile (see ``docs/enrolment.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ptssnn.errors import PtssnnError


def enrol_command(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `ptssnn train`.")],
    clips: Annotated[list[Path], typer.Argument(
        help="Unlabelled audio files and/or directories of ONE speaker.")],
    out: Annotated[Path, typer.Option("--out", help="Profile file to write (JSON).")],
    name: Annotated[str, typer.Option(help="A name for people (never used to compute).")] = "",
    update: Annotated[bool, typer.Option(
        "--update", help="Add the clips to the profile already at --out.")] = False,
) -> None:
    """Build a speaker profile from a few unlabelled clips (about 20 recover most of the gain).

    Bad files are reported and skipped; the exit status is 2 when no clip could be used.
    """
    from ptssnn.cli.use import enrol_clips, find_audio_files
    from ptssnn.features.profile import SpeakerProfile
    from ptssnn.inference import EmotionRecognizer

    err = Console(stderr=True)
    files, missing = find_audio_files(clips)
    for where, reason in missing:
        err.print(f"[yellow]skipped[/] {where}: {reason}", highlight=False)
    if not files:
        raise PtssnnError(f"no audio files found in {', '.join(map(str, clips))}")
    recognizer = EmotionRecognizer.load(model_dir)
    profile = None
    if update:
        profile = SpeakerProfile.load(out)
        recognizer.moments_for(profile)  # refuses a profile of another model before the work
    before = (profile.clips, profile.frames) if profile is not None else (0, 0)
    profile, skipped = enrol_clips(recognizer, files, profile=profile, name=name, console=err)
    skipped += missing
    profile.save(out)
    frames = profile.frames - before[1]
    seconds = frames / recognizer.frame_rate
    err.print(
        f"enrolled {profile.clips - before[0]} of {len(files) + len(missing)} clip(s) "
        f"({seconds:.1f} s of "
        f"audio), skipped {len(skipped)}; the profile now holds {profile.clips} clip(s) -> {out}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``enrol`` to the CLI."""
    app.command("enrol")(enrol_command)
