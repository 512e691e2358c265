"""Making and shipping a model: ``ptssnn train``, ``export`` and ``serve``.

A thin layer over :mod:`ptssnn.training`, :mod:`ptssnn.export` and :mod:`ptssnn.serve`
(``ptssnn predict`` lives in :mod:`ptssnn.cli.use`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ptssnn.cli.options import SPEED_PERTURB_HELP, parse_model_options, speed_factors_option
from ptssnn.errors import PtssnnError
from ptssnn.jsonio import dumps as strict_json


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
    profile_path: Annotated[
        Path | None,
        typer.Option("--profile", help="Speaker profile (`ptssnn enrol`) folded into the "
                     "head's input standardisation: a head personalised to that speaker."),
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
    if profile_path is not None:
        from ptssnn.features.profile import SpeakerProfile
        from ptssnn.inference import EmotionRecognizer

        profile = SpeakerProfile.load(profile_path)
        model = EmotionRecognizer.load(model_dir).personalised_head(profile)
        metadata = {**metadata, "speaker_profile": {"name": profile.name,
                                                    "clips": profile.clips}}
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
    precision: Annotated[
        str, typer.Option(help="fp32, or bf16: mixed-precision training steps (faster on "
                          "CPUs with AVX-512 BF16/AMX and on GPUs; the model stays float32).")
    ] = "fp32",
    model_option: Annotated[
        list[str] | None,
        typer.Option("--model-option", help="KEY=VALUE head option (repeatable), over the "
                     "preset and the backbone's head defaults, e.g. saturation_norm=true."),
    ] = None,
    speed_perturb: Annotated[
        str | None, typer.Option("--speed-perturb", help=SPEED_PERTURB_HELP)
    ] = None,
) -> None:
    """Train a deployable model on all speakers of the given corpora (minus validation)."""
    from ptssnn.processes import retain_freed_memory
    from ptssnn.training.deployment import train_recognizer

    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise PtssnnError(f"--out {out} already exists and is not empty: choose a new folder or "
                          "pass --overwrite to replace it")

    model_options = parse_model_options(model_option)
    factors = speed_factors_option(speed_perturb)
    retain_freed_memory()
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
        config_overrides={"num_threads": threads, "normalisation": normalisation,
                          "precision": precision}
        | ({"frame_pool": frame_pool} if frame_pool else {}),
        model_overrides=model_options,
        speed_perturb=factors,
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
            f"  validation UA {validation_ua:.3f} is the validation run's; the written model "
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
    left_out = [line for corpus in summary.get("corpora", {}).values()
                for line in corpus.get("left_out", [])] + list(summary.get("failed_utterances", []))
    if left_out:
        from ptssnn.corpora.records import left_out_summary

        lines.append(f"  {left_out_summary(left_out)} (all in {out / 'training_summary.json'})")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add ``train``, ``export`` and ``serve`` to the ``ptssnn`` command line."""
    app.command("train")(train_command)
    app.command("export")(export_command)
    app.command("serve")(serve_command)
