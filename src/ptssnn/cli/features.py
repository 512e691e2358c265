"""``ptssnn features``: extract frozen-backbone features into the cache, list backbones.

``torchrun --nproc_per_node N -m ptssnn features extract ...`` shares the utterances across N
processes (gloo); the cache is the same as with one process.
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ptssnn.cli.options import EXTRACT_SPEED_PERTURB_HELP, speed_factors_option
from ptssnn.jsonio import dumps as strict_json

features_app = typer.Typer(
    name="features",
    help="Frozen speech backbones and the feature cache.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: wraps at any width (rich cut words to "…" at 80)
)


class Padding(StrEnum):
    none = "none"
    thirty_seconds = "30s"


class Verify(StrEnum):
    checksum = "checksum"
    size = "size"


def _human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


@features_app.command("extract")
def extract(
    corpus: Annotated[str, typer.Argument(help="Corpus name (casia, emovo, urdu, ...).")],
    root: Annotated[Path, typer.Argument(help="The corpus folder in its original layout.")],
    backbone: Annotated[
        str, typer.Option("--backbone", "-b", help="Backbone name (see `features backbones`).")
    ] = "whisper-base",
    layers: Annotated[
        str, typer.Option(help="Hidden states to keep: all, 3, 1,3,5 or mean:2-4.")
    ] = "all",
    cache: Annotated[
        Path | None,
        typer.Option(help="Cache folder (default $PTSSNN_CACHE or ~/.cache/ptssnn/features)."),
    ] = None,
    padding: Annotated[
        Padding, typer.Option(help="Whisper input: unpadded (none) or padded to 30 s.")
    ] = Padding.none,
    dtype: Annotated[str, typer.Option(help="Storage dtype: float16 or float32.")] = "float16",
    verify: Annotated[
        Verify, typer.Option(help="How cache hits are checked: CRC-32 checksum or size only.")
    ] = Verify.checksum,
    threads: Annotated[
        int,
        typer.Option(
            help="Torch CPU threads per process. One utterance at a time is small work: one "
            "thread per process is the most efficient, and more cores are better used by "
            "more processes (torchrun --nproc_per_node N)."
        ),
    ] = 1,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N utterances (by id); for trials.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    summary_json: Annotated[
        Path | None, typer.Option("--summary-json", help="Also write the summary as JSON here.")
    ] = None,
    speed_perturb: Annotated[
        str | None,
        typer.Option("--speed-perturb", help=EXTRACT_SPEED_PERTURB_HELP),
    ] = None,
) -> None:
    """Extract every utterance of a corpus once; later runs hit the cache."""
    import torch

    from ptssnn.backbones import load_backbone
    from ptssnn.corpora import scan_corpus
    from ptssnn.features import FeatureStore, LayerSelection, ProcessGroup, extract_features
    from ptssnn.features.extraction import AudioPolicy

    started = time.perf_counter()
    # Threads that wait on each other spin: on a busy machine 2 threads were ~10× slower than 1.
    torch.set_num_threads(max(1, threads))
    spec = LayerSelection.parse(layers)
    factors = speed_factors_option(speed_perturb)
    scan = scan_corpus(corpus, root)
    utterances = scan.utterances[:limit] if limit else scan.utterances
    model = load_backbone(backbone, padding=padding.value)
    store = FeatureStore(cache)
    group = ProcessGroup.from_environment()
    console = Console(stderr=True)
    failed = False
    try:
        for speed in (1.0, *factors):
            features = extract_features(
                utterances,
                model,
                spec,
                store,
                progress=progress,
                dtype=dtype,
                audio_policy=AudioPolicy(speed=speed),
                verify=verify.value,
                process_group=group,
                console=console,
            )
            if group.rank == 0:
                failed |= _print_summary(features, scan, corpus, root, model, padding.value,
                                         speed, started, summary_json)
    finally:
        group.close()
    if failed:
        # As `predict`: the batch went on, but a script must see that something was lost.
        raise typer.Exit(1)


def _print_summary(features: Any, scan: Any, corpus: str, root: Path, model: Any,
                   padding: str, speed: float, started: float, summary_json: Path | None
                   ) -> bool:
    """The console summary of one extraction pass (and its JSON); True when a clip failed."""
    report = features.report
    summary = {
        "corpus": corpus,
        "root": str(root),
        "backbone": model.name,
        "padding": padding,
        "speed": speed,
        "layers": features.layers,
        "cache": str(features.namespace.path),
        "scan_problems": len(scan.problems),
        **report.to_dict(),
        "total_seconds": round(time.perf_counter() - started, 3),
        "shape": [features.num_layers, "T", features.hidden_size],
    }
    out = Console()
    copies = f", speed-perturbed copies ×{speed:g}" if speed != 1.0 else ""
    out.print(
        f"[bold]{corpus}[/] with [bold]{model.name}[/] (layers {features.layers}, "
        f"padding {padding}{copies}, {report.processes} process(es))"
    )
    out.print(
        f"  utterances: {report.total} — extracted {report.extracted}, cached {report.cached}, "
        f"failed {report.failed}" + (f", rebuilt {report.rebuilt}" if report.rebuilt else "")
    )
    if scan.problems and speed == 1.0:
        out.print(f"  files the corpus scan could not use: {len(scan.problems)} (listed by "
                  "`ptssnn data scan`)")
        for problem in scan.problems[:3]:
            out.print(f"  [yellow]not used[/] {problem.path}: {problem.reason}", highlight=False)
    for failure in features.failures[:10]:
        out.print(f"  [yellow]skipped[/] {failure.id}: {failure.reason}", highlight=False)
    if len(features.failures) > 10:
        out.print(f"  ... and {len(features.failures) - 10} more")
    rate = (
        f", {report.real_time_factor:.1f}× real time"
        if report.extracted
        else " (all from the cache)"
    )
    out.print(
        f"  time: {report.wall_seconds:.1f} s for {report.audio_seconds / 60:.1f} min of audio"
        f"{rate}; total with loading {summary['total_seconds']:.1f} s"
    )
    if report.extras.get("cropped"):
        from ptssnn.features.extraction import _crop_message

        out.print(f"  [yellow]cropped[/] {_crop_message(report.extras)}", highlight=False)
    out.print(
        f"  cache: {_human_bytes(report.cache_bytes)} ({_human_bytes(report.bytes_per_hour)} per "
        f"hour of audio, {features.dtype}) in {features.namespace.path}",
        highlight=False,
    )
    if summary_json:
        target = (summary_json if speed == 1.0
                  else summary_json.with_name(f"{summary_json.stem}-speed{speed:g}"
                                              f"{summary_json.suffix}"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(strict_json(summary, indent=2))
    return bool(report.failed)


@features_app.command("backbones")
def backbones() -> None:
    """List the backbones and whether each can be loaded here."""
    from ptssnn.backbones import list_backbones

    table = Table("name", "available", "description", "install")
    for info in list_backbones():
        table.add_row(
            info.name,
            "yes" if info.available else "[red]no[/]",
            info.description,
            "" if info.available else info.requirement,
        )
    Console().print(table)


@features_app.command("cache")
def cache_info(
    cache: Annotated[
        Path | None, typer.Option(help="Cache folder (default $PTSSNN_CACHE or ~/.cache/...).")
    ] = None,
) -> None:
    """List what the feature cache holds: one row per backbone/layers/dtype namespace."""
    from ptssnn.features import FeatureStore

    store = FeatureStore(cache)
    table = Table()
    for column in ("backbone", "padding", "layers", "dtype", "entries", "size", "folder"):
        table.add_column(column, overflow="fold")  # wrapped, never cut to "…" in 80 columns
    for found in store.namespaces():
        table.add_row(
            str(found["backbone"].get("name")),
            str(found["backbone"].get("padding", "-")),
            found["layers"],
            found["dtype"],
            str(found["entries"]),
            _human_bytes(found["bytes"]),
            Path(found["path"]).name,
        )
    Console().print(f"feature cache {store.root}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``features`` sub-app to the main app."""
    app.add_typer(features_app, name="features")
