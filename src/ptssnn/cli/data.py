"""``ptssnn data``: list the corpora, scan a corpus folder, show a protocol's folds."""

from __future__ import annotations

from collections import Counter, defaultdict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ptssnn.errors import CorpusError

if TYPE_CHECKING:  # the corpora (numpy, soundfile) load in the commands: a fast --help
    from ptssnn.corpora import CorpusScan, Fold, Utterance
from ptssnn.jsonio import dumps as strict_json

data_app = typer.Typer(
    name="data",
    help="Emotional-speech corpora: scan them, and show their evaluation folds.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: wraps at any width (rich cut words to "…" at 80)
)


class Validation(StrEnum):
    speakers = "speakers"
    stratified = "stratified"
    none = "none"


CorpusArg = Annotated[str, typer.Argument(help="Corpus name (see `ptssnn data corpora`).")]
RootArg = Annotated[Path, typer.Argument(help="The corpus folder, in its original layout.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _dependence(scan: CorpusScan) -> float:
    from ptssnn.corpora import speaker_label_dependence

    return speaker_label_dependence([u.speaker for u in scan.utterances],
                                    [u.label for u in scan.utterances])


def scan_summary(scan: CorpusScan) -> dict[str, Any]:
    """The JSON object of ``ptssnn data scan --json``."""
    grid: dict[str, Counter[str]] = defaultdict(Counter)
    for utterance in scan.utterances:
        grid[utterance.speaker][utterance.label] += 1
    return {
        "corpus": scan.corpus,
        "root": str(scan.root),
        "num_utterances": len(scan.utterances),
        "speakers": scan.speakers,
        "labels": dict(sorted(Counter(u.raw_label for u in scan.utterances).items())),
        "harmonised_labels": dict(sorted(Counter(u.label for u in scan.utterances).items())),
        "speaker_label_counts": {s: dict(sorted(grid[s].items())) for s in scan.speakers},
        "speaker_label_dependence": round(_dependence(scan), 4),
        "total_duration_s": round(scan.total_duration, 3),
        "sample_rates": {
            str(rate): n
            for rate, n in sorted(Counter(u.sample_rate for u in scan.utterances).items())
        },
        "channels": {
            str(ch): n for ch, n in sorted(Counter(u.channels for u in scan.utterances).items())
        },
        "problems": [p.to_dict() for p in scan.problems],
        "excluded": [p.to_dict() for p in scan.excluded],
    }


def _print_scan(scan: CorpusScan, console: Console) -> None:
    from ptssnn.corpora import SPEAKER_LABEL_DEPENDENCE_WARNING, get_corpus
    from ptssnn.corpora.labels import EMOTIONS

    corpus = get_corpus(scan.corpus)
    labels = [label for label in EMOTIONS if label in {u.label for u in scan.utterances}]
    table = Table(
        title=f"{corpus.title}: {len(scan.utterances)} utterances, {len(scan.speakers)} speakers, "
        f"{_duration(scan.total_duration)}"
    )
    table.add_column("speaker")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("total", justify="right", style="bold")
    grid = Counter((u.speaker, u.label) for u in scan.utterances)
    for speaker in scan.speakers:
        row = [grid[speaker, label] for label in labels]
        table.add_row(speaker, *map(str, row), str(sum(row)))
    totals = Counter(u.label for u in scan.utterances)
    table.add_row("total", *(str(totals[label]) for label in labels), str(len(scan.utterances)),
                  style="bold")  # fmt: skip
    console.print(table)
    dependence = _dependence(scan)
    note = ("; per-speaker normalisation and enrolment would take out the emotion with the "
            "voice (docs/enrolment.md)" if dependence >= SPEAKER_LABEL_DEPENDENCE_WARNING
            else "")
    console.print(f"speaker-label dependence {dependence:.2f} (0 = every speaker holds every "
                  f"emotion alike, 1 = one emotion each){note}")
    rates = Counter(u.sample_rate for u in scan.utterances)
    channels = Counter(u.channels for u in scan.utterances)
    console.print(
        "sample rates: " + ", ".join(f"{rate} Hz x{n}" for rate, n in sorted(rates.items()))
        + "; channels: " + ", ".join(f"{ch} x{n}" for ch, n in sorted(channels.items()))
    )  # fmt: skip
    if scan.excluded:
        reasons = Counter(p.reason for p in scan.excluded)
        console.print(
            f"excluded (outside the class set): {len(scan.excluded)} files: "
            + ", ".join(f"{reason} x{n}" for reason, n in reasons.most_common())
        )
    if scan.problems:
        problems = Table(title=f"{len(scan.problems)} problem files", title_style="bold red")
        problems.add_column("file")
        problems.add_column("reason")
        for problem in scan.problems:
            problems.add_row(_relative(problem.path, scan.root), problem.reason)
        console.print(problems)
    else:
        console.print("no problem files")


@data_app.command("corpora")
def corpora(as_json: JsonOpt = False) -> None:
    """List the corpora the scanner knows, their layouts, classes and protocols."""
    from ptssnn.corpora import list_corpora

    entries = [
        {
            "name": c.name,
            "title": c.title,
            "layout": c.layout,
            "labels": list(c.labels),
            "raw_labels": dict(c.label_map),
            "protocols": list(c.protocols),
            "default_protocol": c.default_protocol,
        }
        for c in list_corpora()
    ]
    if as_json:
        typer.echo(strict_json(entries, indent=2))
        return
    table = Table(title="corpora")
    table.add_column("name")
    table.add_column("layout", overflow="fold")
    table.add_column("classes")
    table.add_column("protocols (default first)")
    for entry in entries:
        table.add_row(entry["name"], entry["layout"], ", ".join(entry["labels"]),
                      ", ".join(entry["protocols"]))  # fmt: skip
    Console().print(table)


@data_app.command("scan")
def scan(
    corpus: CorpusArg,
    root: RootArg,
    as_json: JsonOpt = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the utterances as a JSONL manifest.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on the first problem file.")
    ] = False,
    min_seconds: Annotated[
        float, typer.Option(help="Files shorter than this are problems.")
    ] = 0.25,
    check_audio: Annotated[
        bool,
        typer.Option("--check-audio/--header-only",
                     help="Decode every file: NaN-filled, silent or corrupt audio are problems."),
    ] = True,
) -> None:
    """Scan a corpus folder: counts by speaker and emotion, formats, and every problem file."""
    from ptssnn.corpora import scan_corpus, write_manifest

    result = scan_corpus(corpus, root, strict=strict, min_seconds=min_seconds,
                         check_audio=check_audio)
    if out is not None:
        write_manifest(result.utterances, out)
    if as_json:
        summary = scan_summary(result)
        summary["manifest"] = str(out) if out is not None else None
        typer.echo(strict_json(summary, indent=2, ensure_ascii=False))
        return
    console = Console()
    _print_scan(result, console)
    if out is not None:
        console.print(f"manifest: {out} ({len(result.utterances)} lines)")


def _load(corpus: str, root: Path, console: Console) -> list[Utterance]:
    """Utterances from a corpus folder, or from a manifest written by ``data scan --out``."""
    from ptssnn.corpora import get_corpus, read_manifest, scan_corpus

    if root.is_file() and root.suffix == ".jsonl":
        utterances = read_manifest(root)
        name = get_corpus(corpus).name
        if any(u.corpus != name for u in utterances):
            raise CorpusError(f"manifest {root} holds utterances of another corpus than {name}")
        return utterances
    result = scan_corpus(corpus, root)
    if result.problems:
        console.print(
            f"[yellow]{len(result.problems)} problem files left out "
            f"(see `ptssnn data scan {corpus} {root}`)[/]"
        )
    return result.utterances


def fold_summary(fold: Fold, speaker: dict[str, str]) -> dict[str, Any]:
    """The JSON object of one fold in ``ptssnn data folds --json``."""
    entry: dict[str, Any] = {
        "name": fold.name,
        "protocol": fold.protocol,
        "validation_policy": fold.validation_policy,
    }
    for side in ("train", "validation", "test"):
        ids = getattr(fold, side)
        entry[side] = {"ids": list(ids), "speakers": sorted({speaker[i] for i in ids})}
    return entry


@data_app.command("folds")
def folds(
    corpus: CorpusArg,
    root: Annotated[
        Path,
        typer.Argument(help="The corpus folder, or a manifest from `ptssnn data scan --out`."),
    ],
    protocol: Annotated[
        str | None,
        typer.Option(help="Protocol (see `ptssnn data corpora`); default: the corpus's own."),
    ] = None,
    as_json: JsonOpt = False,
    seed: Annotated[int, typer.Option(help="Seeds the choice of validation speakers.")] = 0,
    validation: Annotated[
        Validation, typer.Option(help="How validation is carved from the training side.")
    ] = Validation.speakers,
    validation_fraction: Annotated[
        float, typer.Option(help="Share of the training side held out for validation.")
    ] = 0.1,
) -> None:
    """Show a protocol's folds: train/validation/test sizes and speakers."""
    from ptssnn.corpora import get_corpus, make_folds

    # Status lines go to stderr so that --json output stays parseable.
    console = Console(stderr=as_json)
    utterances = _load(corpus, root, console)
    result = make_folds(
        corpus,
        utterances,
        protocol,
        seed=seed,
        validation=validation.value,
        validation_fraction=validation_fraction,
    )
    speaker = {u.id: u.speaker for u in utterances}
    entries = [fold_summary(fold, speaker) for fold in result]
    if as_json:
        typer.echo(strict_json(entries, indent=2))
        return
    name = get_corpus(corpus).name
    table = Table(title=f"{name}: protocol {result[0].protocol}, {len(result)} folds")
    for column in ("fold", "train", "validation", "test", "test speakers",
                   "validation speakers", "validation"):  # fmt: skip
        table.add_column(column, justify="right" if column in ("train", "test") else "left")
    for entry in entries:
        table.add_row(
            entry["name"],
            str(len(entry["train"]["ids"])),
            str(len(entry["validation"]["ids"])),
            str(len(entry["test"]["ids"])),
            ", ".join(entry["test"]["speakers"]),
            ", ".join(entry["validation"]["speakers"]),
            entry["validation_policy"],
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``data`` sub-app to the main app."""
    app.add_typer(data_app, name="data")
