"""``ptssnn model``: list the presets, and summarise a head's parameters, operations and energy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from ptssnn.jsonio import dumps as strict_json

if TYPE_CHECKING:  # torch, numpy and the models load in the commands, so --help stays fast
    import numpy as np

    from ptssnn.energy import EfficiencyReport

model_app = typer.Typer(
    name="model",
    help="PTS-SNN heads: presets, parameter counts, FLOPs/SOPs and energy per sample.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: wraps at any width (rich cut words to "…" at 80)
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@model_app.command("presets")
def presets(as_json: JsonOpt = False) -> None:
    """List the model presets (the ablation ladder and the ANN baseline)."""
    from ptssnn.models import list_presets

    entries = list_presets()
    if as_json:
        typer.echo(strict_json([{"name": k, "description": v} for k, v in entries.items()],
                              indent=2))
        return
    table = Table(title="model presets")
    table.add_column("preset", style="bold")
    table.add_column("description")
    for name, description in entries.items():
        table.add_row(name, description)
    Console().print(table)


def _load_features(path: Path) -> np.ndarray:
    """One utterance's features from ``.npy``: ``[T, D]`` or ``[L, T, D]``."""
    import numpy as np

    if not path.is_file():
        raise typer.BadParameter(f"{path}: no such file", param_hint="--features")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"{path}: not a readable .npy array ({error})",
                                 param_hint="--features") from error
    if array.ndim not in (2, 3) or not np.issubdtype(array.dtype, np.floating):
        raise typer.BadParameter(
            f"{path}: expected float features [T, D] or [L, T, D], got {array.dtype} "
            f"{list(array.shape)}", param_hint="--features")
    return array


@model_app.command("summary")
def summary(
    preset: Annotated[str, typer.Option("--preset", help="Preset (see `ptssnn model presets`).")
                      ] = "pts-snn",
    input_dim: Annotated[int | None, typer.Option(
        "--input-dim", help="Backbone feature width D_in (default: from --features).")] = None,
    frames: Annotated[int, typer.Option(
        "--frames", help="Frames per utterance for the estimate (50 per second).")] = 250,
    firing_rate: Annotated[float, typer.Option(
        "--firing-rate", help="Assumed firing rate for the estimate (no --features).")] = 0.1,
    features: Annotated[Path | None, typer.Option(
        "--features", help="Measure on one utterance's features (.npy, [T, D] or [L, T, D]) "
                           "instead of estimating.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="Use a trained head (folder from save_pretrained) instead of a "
                             "fresh preset.")] = None,
    num_classes: Annotated[int, typer.Option("--num-classes", help="Number of classes.")] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Parameters per module, FLOPs/SOPs and energy per sample of a head.

    Without --features: MACs from the architecture at --frames frames, spikes at
    --firing-rate. With --features: one real forward pass, firing rates measured (a fresh
    preset has random weights: use --checkpoint for a trained head).
    """
    import numpy as np
    import torch

    from ptssnn.energy import estimate, measure
    from ptssnn.models import create_model, load_pretrained

    array = _load_features(features) if features is not None else None
    if checkpoint is not None:
        model, _ = load_pretrained(checkpoint)
    else:
        if input_dim is None:
            if array is None:
                raise typer.BadParameter("give --input-dim (or --features)",
                                         param_hint="--input-dim")
            input_dim = int(array.shape[-1])
        layers = int(array.shape[0]) if array is not None and array.ndim == 3 else 1
        model = create_model(preset, input_dim, num_classes, input_layers=layers)
    if array is None:
        report = estimate(model.config, frames=frames, firing_rate=firing_rate)
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        report = measure(model, tensor.unsqueeze(0))
    if as_json:
        typer.echo(strict_json(report.to_dict(), indent=2))
        return
    _print_report(report, Console())


def _print_report(report: EfficiencyReport, console: Console) -> None:
    modules = Table(title=f"{report.preset}: trainable parameters")
    modules.add_column("module")
    modules.add_column("parameters", justify="right")
    for name, count in report.modules.items():
        modules.add_row(name, f"{count:,}")
    modules.add_row("[bold]total[/]", f"[bold]{report.trainable_parameters:,}[/]")
    console.print(modules)

    layers = Table(title=f"operations per sample ({report.frames_per_sample:g} frames, "
                         f"firing rate: {report.firing_rate_source})")
    layers.add_column("layer", overflow="fold")
    for column in ("fed by", "MACs", "SOPs", "input rate", "energy (nJ)"):
        layers.add_column(column, justify="left" if column == "fed by" else "right")
    n = max(report.samples, 1)
    for layer in report.layers:
        rate = "" if layer.input_firing_rate is None else f"{layer.input_firing_rate:.3f}"
        layers.add_row(layer.name, layer.fed_by, f"{layer.macs / n:,.0f}", f"{layer.sops / n:,.0f}",
                       rate, f"{layer.energy_pj / n / 1e3:,.1f}")
    console.print(layers)

    if report.neurons:
        neurons = Table(title="firing statistics (real frames)")
        neurons.add_column("neurons", overflow="fold")
        for column in ("count", "rate", "silent <1%", "saturated >99%"):
            neurons.add_column(column, justify="right")
        for stat in report.neurons:
            neurons.add_row(stat.name, str(stat.neurons), f"{stat.firing_rate:.3f}",
                            f"{stat.silent_fraction:.1%}", f"{stat.saturated_fraction:.1%}")
        console.print(neurons)

    console.print(
        f"MACs/sample {report.macs_per_sample:,.0f} · FLOPs/sample {report.flops_per_sample:,.0f}"
        f" · SOPs/sample {report.sops_per_sample:,.0f} · energy/sample "
        f"[bold]{report.energy_mj_per_sample:.4f} mJ[/] "
        f"(E_MAC {report.e_mac_pj} pJ, E_AC {report.e_ac_pj} pJ)")
    console.print(f"[dim]Counted: {report.counted}[/]")
    console.print(f"[dim]{report.excluded}[/]")


def register(app: typer.Typer) -> None:
    """Add the ``model`` sub-app to the main app."""
    app.add_typer(model_app, name="model")
