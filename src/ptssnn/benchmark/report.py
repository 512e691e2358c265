"""``results.json`` and ``report.md`` (a table per corpus, plots linked) from benchmark results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ptssnn.jsonio import dumps as strict_json
from ptssnn.training.config import REFIT_MAX_MIN_SPEAKERS, refit_policy

SYNTHETIC_BANNER = (
    "> **SYNTHETIC DATA.** These numbers come from a generated emotional-prosody corpus "
    "(harmonic tones whose pitch contour, energy, tempo and jitter differ per class), not "
    "from real speech. They show that the pipeline works, nothing about emotion recognition."
)


#: The baseline head's name (``ptssnn.benchmark.runner.PROBE``).
PROBE_NAME = "probe"


def _pct(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("mean") is None or math.isnan(entry["mean"]):
        return "n/a"
    return f"{100 * entry['mean']:.1f} ± {100 * entry['std']:.1f}"


def _num(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, fmt)


def _params(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1e6:.2f} M"
    if count >= 1_000:
        return f"{count / 1e3:.1f} k"
    return str(count)


def _firing(eff: dict[str, Any] | None, key: str, condition: str = "calibrated") -> str:
    if not eff or condition not in eff or key not in eff[condition]:
        return "–"
    return f"{100 * eff[condition][key]:.1f}"


def _normalisation(model: dict[str, Any]) -> str:
    """``speaker 4/4``-style count of the feature standardisation the fold runs used."""
    counts = model.get("normalisation") or {}
    total = sum(counts.values())
    return ", ".join(f"{norm} {n}/{total}" for norm, n in counts.items()) or "–"


def corpus_table(corpus: str, entry: dict[str, Any], plot_links: dict[str, list[str]]) -> str:
    """The Markdown section of one corpus."""
    from ptssnn.benchmark.settings import MODEL_ORDER

    lines = []
    tag = " — SYNTHETIC" if entry.get("synthetic") else ""
    lines.append(f"## {corpus}{tag}")
    lines.append("")
    folds = entry["folds"]
    policies = sorted({f["validation_policy"] for f in folds})
    lines.append(
        f"{entry['num_utterances']} utterances, {entry['num_speakers']} speakers, "
        f"{len(entry['label_names'])} classes ({', '.join(entry['label_names'])}); protocol "
        f"`{entry['protocol']}`, {len(folds)} folds; validation: {', '.join(policies)}."
    )
    lines.append("")
    for warning in entry.get("warnings", []):
        lines += [f"**{warning[0].upper()}{warning[1:]}.**", ""]
    extra = entry.get("multi_corpus")
    if extra and extra.get("corpora"):
        lines.append(
            "Training splits also held " + ", ".join(
                f"all {count} utterances of {name}" for name, count in extra["corpora"].items())
            + f" ({extra['utterances']} utterances, {extra['speakers']} speakers; classes "
            f"learned: {', '.join(extra['labels'])}); scored over {corpus}'s own classes.")
        lines.append("")
    copies = entry.get("speed_perturb")
    if copies:
        made = ", ".join(f"×{factor} {count}" for factor, count in copies["copies"].items())
        failed = sum(copies.get("failed", {}).values())
        lines.append(
            f"Speed perturbation: copies of the training clips ({made}"
            + (f"; {failed} could not be made" if failed else "") + ") joined each fold's "
            "training split, and the copies of its validation clips its refit on training + "
            "validation; model selection and scoring used the original clips only.")
        lines.append("")
    lines.append("| model | WA % | UA % | macro-F1 % | weighted-F1 % | params | head energy "
                 "mJ/sample | firing rate % | silent % | saturated % | silent / saturated % "
                 "without calibration | layers | features | best epoch |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    models = sorted(entry["models"], key=lambda m: (MODEL_ORDER.index(m)
                                                    if m in MODEL_ORDER else 99, m))
    for model in models:
        m = entry["models"][model]
        metrics = m["metrics"]
        eff = m.get("efficiency")
        energy = _num(eff.get("energy_mj_per_sample") if eff else None, ".4f")
        uncal = "–"
        if eff and "uncalibrated" in eff:
            uncal = (f"{_firing(eff, 'silent_fraction', 'uncalibrated')} / "
                     f"{_firing(eff, 'saturated_fraction', 'uncalibrated')}")
        epochs = m.get("epochs", {})
        lines.append(
            f"| {model} | {_pct(metrics['wa'])} | {_pct(metrics['ua'])} | "
            f"{_pct(metrics['macro_f1'])} | {_pct(metrics['weighted_f1'])} | "
            f"{_params(m['num_parameters'])} | {energy} | {_firing(eff, 'mean_rate')} | "
            f"{_firing(eff, 'silent_fraction')} | {_firing(eff, 'saturated_fraction')} | "
            f"{uncal} | {', '.join(m['layers'])} | {_normalisation(m)} | "
            f"{_num(epochs.get('mean'), '.1f')} |"
        )
    backbone = entry.get("backbone_energy", {})
    if backbone:
        lines.append("")
        lines.append(
            f"Backbone (frozen, not in the head energy): {backbone['macs_per_sample'] / 1e6:,.1f} "
            f"M MAC/sample × 4.6 pJ = {backbone['energy_mj_per_sample']:.4g} mJ/sample "
            "(mean over test utterances)."
        )
    lines.append("")
    lines.append("Per-fold UA % (mean over seeds):")
    lines.append("")
    names = [f["name"] for f in folds]
    lines.append("| model | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for model in models:
        cells = [f"{100 * v:.1f}" if v is not None else "–"
                 for v in fold_means(entry, model, names)]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += paired_table(entry, models, names)
    lines += enrolment_table(entry)
    links = plot_links.get(corpus, [])
    if links:
        lines.append("")
        lines.append("Plots: " + " · ".join(links))
    lines += left_out_list(entry.get("problems", []))
    lines.append("")
    return "\n".join(lines)


def fold_means(entry: dict[str, Any], model: str, names: list[str]) -> list[float | None]:
    """Test UA (0–1) of ``model`` per fold, averaged over seeds (None: fold not run)."""
    runs = entry["models"][model].get("runs", {})
    means: list[float | None] = []
    for name in names:
        values = [f["test"]["ua"] for run in runs.values() for f in run["folds"]
                  if f["fold"] == name]
        means.append(sum(values) / len(values) if values else None)
    return means


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ≥ 2 values and its 95 % Student-t interval."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    half = float(stats.t.ppf(0.975, n - 1)) * sd / n ** 0.5
    return mean, mean - half, mean + half


def paired_table(entry: dict[str, Any], models: list[str], names: list[str],
                 baseline: str = "probe") -> list[str]:
    """Each head against ``baseline`` on the same folds: the mean of the per-fold UA
    differences (seeds averaged first) with a 95 % Student-t interval over folds, and the
    folds above / below. Spreads over folds mostly measure how hard each test speaker is;
    the paired difference removes that, so it says whether a gap is larger than its noise."""
    if baseline not in models or len(names) < 2:
        return []
    reference = fold_means(entry, baseline, names)
    rows = []
    for model in models:
        if model == baseline:
            continue
        pairs = [(a, b) for a, b in zip(fold_means(entry, model, names), reference, strict=True)
                 if a is not None and b is not None]
        if len(pairs) < 2:
            continue
        diffs = [100 * (a - b) for a, b in pairs]
        mean, low, high = mean_interval(diffs)
        above = sum(d > 0 for d in diffs)
        below = sum(d < 0 for d in diffs)
        rows.append(f"| {model} | {mean:+.1f} | [{low:+.1f}, {high:+.1f}] | "
                    f"{above} / {below} of {len(diffs)} |")
    if not rows:
        return []
    return ["", f"Paired against `{baseline}` (UA points; per fold, seeds averaged first; 95 % "
            "Student-t interval over folds: an interval that holds 0 is a gap within the "
            "noise of these folds):", "",
            "| model | mean difference | 95 % interval | folds above / below |",
            "|---|---|---|---|", *rows]


def multi_corpus_note(corpora: dict[str, Any]) -> list[str]:
    """The report's paragraph on ``--multi-corpus``: what each corpus's training added."""
    added = []
    for corpus, entry in corpora.items():
        extra = entry.get("multi_corpus") or {}
        parts = ", ".join(f"{name} {count}" for name, count in extra.get("corpora", {}).items())
        added.append(f"{corpus}: + {extra.get('utterances', 0)} utterances "
                     f"({parts or 'no other corpus in the run'})")
    return [
        "**Multi-corpus training** (`--multi-corpus`): the training split of every fold of a "
        "corpus also held every utterance (all speakers) of the run's other corpora — "
        + "; ".join(added) + ". Heads learned the union of the run's harmonised classes; "
        "validation and test splits are the corpus's own speakers only (the same "
        "speaker-independent folds), predictions are restricted to the corpus's own classes, "
        "and every metric below is over those classes.",
        "",
    ]


def left_out_list(problems: list[str], shown: int = 50) -> list[str]:
    """The files of a corpus that no head saw, with the reason for each (``path: reason``)."""
    if not problems:
        return []
    lines = ["", f"Files left out ({len(problems)}; the scan or the backbone could not use "
                 "them, no head saw them):", ""]
    for problem in problems[:shown]:
        path, _, reason = problem.partition(": ")
        lines.append(f"- `{path}`: {reason}" if reason else f"- `{path}`")
    if len(problems) > shown:
        lines.append(f"- and {len(problems) - shown} more (`problems` in results.json)")
    return lines


def enrolment_table(entry: dict[str, Any]) -> list[str]:
    """Lines of the per-K enrolment table of one corpus (none without the protocol)."""
    heads = {m: e["enrolment"] for m, e in entry["models"].items() if e.get("enrolment")}
    if not heads:
        return []
    ks = list(next(iter(heads.values())))
    lines = ["", "Enrolment (UA %, mean ± std over folds × seeds): per test speaker, K random "
             "unlabelled clips build a speaker profile and are not scored; `all` = every clip "
             "of the speaker, all scored (transductive).", "",
             "| model | " + " | ".join(f"K = {k}" for k in ks) + " |",
             "|---|" + "---|" * len(ks)]
    for model, per_k in heads.items():
        lines.append(f"| {model} | " + " | ".join(
            _pct(per_k[k]["ua"]) if k in per_k else "–" for k in ks) + " |")
    lines += enrolment_gain_table(entry, list(heads), ks)
    return lines


def enrolment_gain_table(entry: dict[str, Any], models: list[str], ks: list[str]) -> list[str]:
    """What a profile of K clips gains over none, paired per fold (seeds averaged first):
    mean UA difference with a 95 % Student-t interval over folds, and the folds where it
    costs more than a point (what a deployment risks for one speaker)."""
    if "0" not in ks:
        return []
    rows = []
    for model in models:
        runs = entry["models"][model].get("runs", {})
        per_fold: dict[str, dict[str, list[float]]] = {}
        for run in runs.values():
            for fold in run["folds"]:
                for k, scores in (fold.get("enrolment") or {}).items():
                    per_fold.setdefault(fold["fold"], {}).setdefault(k, []).append(scores["ua"])
        cells = []
        for k in ks:
            if k in ("0", "all"):
                continue
            diffs = [100 * (sum(f[k]) / len(f[k]) - sum(f["0"]) / len(f["0"]))
                     for f in per_fold.values() if k in f and "0" in f]
            if len(diffs) < 2:
                cells.append("–")
                continue
            mean, low, high = mean_interval(diffs)
            worse = sum(d < -1.0 for d in diffs)
            cells.append(f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]; {worse} of {len(diffs)} "
                         "folds > 1 point below")
        if cells:
            rows.append(f"| {model} | " + " | ".join(cells) + " |")
    shown = [k for k in ks if k not in ("0", "all")]
    if not rows or not shown:
        return []
    return ["", "Against no profile (K = 0), paired per fold (UA points, seeds averaged first; "
            "95 % Student-t interval over folds; K = 0 scores all of a speaker's clips, "
            "K > 0 the others):", "",
            "| model | " + " | ".join(f"K = {k} − K = 0" for k in shown) + " |",
            "|---|" + "---|" * len(shown), *rows]


def render_report(results: dict[str, Any], plot_links: dict[str, list[str]] | None = None
                  ) -> str:
    """``report.md`` text."""
    plot_links = plot_links or {}
    settings = results["settings"]
    train = settings["train"]
    env = results["environment"]
    lines = ["# PTS-SNN benchmark report", ""]
    if results.get("synthetic"):
        lines += [SYNTHETIC_BANNER, ""]
    backbone = results.get("backbone", {}).get("name", settings["backbone"])
    lines.append(
        f"Backbone `{backbone}`; seeds {settings['seeds']}; heads "
        f"{', '.join(settings['models'])}. Mean ± std over all folds × seeds (population std)."
    )
    lines.append("")
    if settings.get("multi_corpus"):
        lines += multi_corpus_note(results["corpora"])
    lines.append(f"Validation policy: {results['validation_policy']}.")
    lines.append("")
    lines.append(
        f"Training: AdamW lr {train['lr']}, weight decay {train['weight_decay']}, batch "
        f"{train['batch_size']}, ≤ {train['max_epochs']} epochs, patience {train['patience']}, "
        f"warm-up {train['warmup_epochs']} epochs + cosine, label smoothing "
        f"{train['label_smoothing']}, layers `{train['layers']}`{_layer_mix_note(train)}, "
        f"feature standardisation `{train.get('normalisation', 'none')}`, backbone frames "
        f"averaged in groups of {train.get('frame_pool', 1)}{_refit_note(train)}; mixup α "
        f"{train.get('mixup_alpha', 0.0)}, masks and mixup on the "
        f"{train.get('augment_space', 'raw')} features"
        f"{_average_note(train)}{_precision_note(train)}."
    )
    lines.append("")
    head_note = _head_options_note(settings)
    if head_note:
        lines += [head_note, ""]
    if PROBE_NAME in settings["models"]:
        lines.append(
            "Probe: class-balanced logistic regression on mean + std over time of one hidden "
            "state; C (0.01 / 0.1 / 1) chosen on the validation speakers, and the hidden "
            "state too unless the heads read a fixed one (then the same one); refit on "
            "training + validation data, as the neural heads are.")
        lines.append("")
    lines.append(
        "Column *features*: how many fold runs read globally standardised features "
        "(training-split moments, kept in the model), speaker-standardised ones (each speaker "
        "by its own moments, test speakers included: audio only, never labels) or raw ones "
        "(`vanilla-snn`); with `auto` the choice is made per fold by a linear probe's "
        "validation UA.")
    lines.append("")
    timings = results.get("timings", {})
    total = timings.get("total_s")
    if total is not None:
        jobs = settings.get("jobs") or env["cpu_count"]
        lines.append(
            f"Wall time {total / 60:.1f} min on {env['cpu_count']} CPU cores, {jobs} training "
            f"process(es) × {settings.get('threads') or 1} thread(s) ({env['platform']}); peak "
            f"memory {results.get('peak_memory_mb', 0):.0f} MiB (main)"
            + (f" + {worker:.0f} MiB per worker" if (worker := results.get(
                "peak_worker_memory_mb")) else ", no worker process") + "; "
            f"torch {env['torch']}, scikit-learn {env['scikit_learn']}, ptssnn {env['ptssnn']}."
        )
        lines.append("")
    lines.append("Command: `" + " ".join(results.get("command", [])) + "`")
    lines.append("")
    enrolment = settings.get("enrolment")
    if enrolment:
        lines.append(
            f"Enrolment protocol: K ∈ {{{', '.join(enrolment['ks'])}}}, {enrolment['draws']} "
            f"random draw(s) of the enrolment clips per K and fold, profiles shrunk toward the "
            f"training split's moments with a prior worth {enrolment['prior_clips']:g} clips "
            "(`docs/enrolment.md`).")
        lines.append("")
    for corpus, entry in results["corpora"].items():
        lines.append(corpus_table(corpus, entry, plot_links))
    if results.get("cross_corpus"):
        lines += ["## Cross-corpus", "",
                  "Trained on the source corpus (validation: held-out source speakers), tested "
                  "on every target utterance of the shared classes. Mean ± std over seeds.", "",
                  "| source → target | classes | model | WA % | UA % | macro-F1 % |",
                  "|---|---|---|---|---|---|"]
        for name, entry in results["cross_corpus"].items():
            for model, m in entry["models"].items():
                lines.append(
                    f"| {name.replace('->', ' → ')} | {', '.join(entry['labels'])} | {model} | "
                    f"{_pct(m['metrics']['wa'])} | {_pct(m['metrics']['ua'])} | "
                    f"{_pct(m['metrics']['macro_f1'])} |")
        lines.append("")
    return "\n".join(lines)


def write_plots(results: dict[str, Any], out: Path) -> dict[str, list[str]]:
    """Draw every figure; returns Markdown links per corpus (relative to ``out``)."""
    from ptssnn.evaluation.plots import (
        plot_confusion,
        plot_firing_rates,
        plot_histograms,
        plot_training_curves,
    )

    links: dict[str, list[str]] = {}
    plot_dir = out / "plots"
    for corpus, entry in results["corpora"].items():
        heads = {m: e["enrolment"] for m, e in entry["models"].items() if e.get("enrolment")}
        if heads:
            from ptssnn.evaluation.plots import plot_enrolment

            path = plot_enrolment(heads, plot_dir / f"{corpus}-enrolment.png",
                                  title=f"{corpus}: UA vs enrolment clips K")
            links.setdefault(corpus, []).append(
                f"[UA vs K]({path.relative_to(out).as_posix()})")
        for model, m in entry["models"].items():
            stem = f"{corpus}-{model}"
            made = []
            path = plot_confusion(m["confusion"], entry["label_names"],
                                  plot_dir / f"{stem}-confusion.png",
                                  title=f"{corpus} · {model}: confusion (all folds, seeds)")
            made.append(("confusion", path))
            first = next(iter(m.get("runs", {}).values()), None)
            histories = {f["fold"]: f["fit"]["history"] for f in (first or {}).get("folds", [])
                         if f.get("fit", {}).get("history")}
            if histories:
                path = plot_training_curves(histories, plot_dir / f"{stem}-curves.png",
                                            title=f"{corpus} · {model}: training (seed 0)")
                made.append(("curves", path))
            eff = m.get("efficiency") or {}
            rates = {cond: eff[cond]["layers"] for cond in ("calibrated", "uncalibrated")
                     if cond in eff and eff[cond].get("layers")}
            if rates:
                names = {"calibrated": "as trained", "uncalibrated": "calibration zeroed"}
                path = plot_firing_rates({names[k]: v for k, v in rates.items()},
                                         plot_dir / f"{stem}-firing.png",
                                         title=f"{corpus} · {model}: firing rate per layer")
                made.append(("firing rates", path))
            hists = eff.get("histograms") or {}
            for quantity, hist in hists.items():
                if not hist:
                    continue
                path = plot_histograms(
                    hist, plot_dir / f"{stem}-{quantity}.png",
                    threshold=eff.get("threshold", 1.0),
                    title=f"{corpus} · {model}: {quantity.replace('_', ' ')}",
                    xlabel=quantity.replace("_", " "),
                )
                made.append((quantity.replace("_", " "), path))
            links.setdefault(corpus, []).extend(
                f"[{model} {kind}]({p.relative_to(out).as_posix()})" for kind, p in made
            )
    return links


def write_outputs(results: dict[str, Any], out: str | Path, *, plots: bool = True) -> None:
    """Write ``results.json``, the plots (optional) and ``report.md`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    tmp.write_text(strict_json(results, indent=1, default=_json_default))
    tmp.replace(out / "results.json")
    links = write_plots(results, out) if plots else {}
    (out / "report.md").write_text(render_report(results, links))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def results_table(results: dict[str, Any]) -> list[dict[str, str]]:
    """Rows (corpus, model, WA, UA, macro-F1, params, energy) for printing in the terminal."""
    rows = []
    for corpus, entry in results["corpora"].items():
        for model, m in entry["models"].items():
            eff = m.get("efficiency") or {}
            rows.append({
                "corpus": corpus + (" (SYNTHETIC)" if entry.get("synthetic") else ""),
                "model": model,
                "WA %": _pct(m["metrics"]["wa"]),
                "UA %": _pct(m["metrics"]["ua"]),
                "macro-F1 %": _pct(m["metrics"]["macro_f1"]),
                "params": _params(m["num_parameters"]),
                "mJ/sample": _num(eff.get("energy_mj_per_sample"), ".4f"),
            })
    return rows


def _layer_mix_note(train: dict[str, Any]) -> str:
    scale = train.get("layer_mix_lr_scale", 1.0)
    return (f" (layer weights at {scale:g}× the learning rate)"
            if train.get("layers") == "all" and scale != 1.0 else "")


def _refit_note(train: dict[str, Any]) -> str:
    if not train.get("refit"):
        return ""
    # Speakers unknown: "max" here means the whole schedule whatever the fold holds.
    if refit_policy(train.get("refit_epochs", "best"), None, train.get("normalisation")) == "max":
        return f", refit on training + validation for all {train['max_epochs']} epochs"
    if train.get("refit_epochs") == "auto":
        return (f", refit on training + validation for all {train['max_epochs']} epochs with "
                f"≥ {REFIT_MAX_MIN_SPEAKERS} training + validation speakers, else for the "
                f"selected epoch count{_smoothing_note(train)}")
    return f", refit on training + validation for the selected epoch count{_smoothing_note(train)}"


def _smoothing_note(train: dict[str, Any]) -> str:
    window = train.get("refit_smoothing", 1)
    return "" if window == 1 else f" (validation UA averaged over {window} epochs)"


def _head_options_note(settings: dict[str, Any]) -> str:
    """The neural heads' options beyond their presets (backbone defaults, --model-option)."""
    defaults = settings.get("head_defaults") or {}
    overrides = settings.get("model_overrides") or {}
    if not defaults and not overrides:
        return ""
    parts = [f"`{key}={value}` (the `{settings['backbone']}` backbone's default)"
             for key, value in defaults.items() if key not in overrides]
    parts += [f"`{key}={value}`" for key, value in overrides.items()]
    return "Head options: " + ", ".join(parts) + "."


def _precision_note(train: dict[str, Any]) -> str:
    """The training arithmetic, when it is not plain float32."""
    if train.get("precision", "fp32") == "bf16":
        return ("; mixed-precision training steps (bfloat16 products, float32 neurons, "
                "weights and evaluation)")
    return ""


def _average_note(train: dict[str, Any]) -> str:
    horizon = train.get("weight_average_epochs", 0.0)
    return f", weights averaged (EMA, horizon {horizon:g} epochs)" if horizon else ""
