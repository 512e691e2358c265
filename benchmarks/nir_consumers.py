"""Do independent NIR tools run ``ptssnn export --format nir`` unchanged, and agree with the model?

Two phases, because the consumers live in their own virtual environment (their dependencies
would replace the project's CPU torch):

1. ``prepare`` (project venv): export a head for every target, compute real features of a
   few clips, and record the model's logits and the spikes of every PLIF layer::

       PYTHONPATH=src .venv/bin/python benchmarks/nir_consumers.py prepare \\
           --model /tmp/nir-casia-model --data-root /work/shared/data --work /tmp/nirbench

2. ``run`` (consumer venv: torch 2.13.0 CPU, then ``--no-deps`` snntorch 1.0.0, norse 1.1.0,
   sinabs 3.1.3, nir, nirtorch, pbr; see benchmarks/README.md)::

       PYTHONPATH=src /tmp/nirvenv/bin/python benchmarks/nir_consumers.py run \\
           --work /tmp/nirbench --out benchmarks/results/nir_consumers.json

   Every NIR segment of the export is loaded by the consumer's own importer, from the file,
   without edits, and run frame by frame (snntorch, norse) or as one sequence (sinabs); the
   host operations run in ptssnn's reference host runner (``ptssnn.export.NIRExport``),
   which only chains the segments. Reported per consumer and clip: whether every spike of
   every LIF layer equals the model's, the number of differing spikes, and the largest logit
   difference. sinabs is run twice: as loaded, and with the documented two-attribute recipe
   (single spike, reset to zero) that its importer cannot express.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

CONSUMERS = ("snntorch", "norse", "sinabs", "sinabs-recipe")


# ----------------------------------------------------------------------------- prepare
def prepare(model_dir: Path | None, data_root: Path, work: Path, clips: int) -> None:
    from ptssnn.audio import load_audio
    from ptssnn.export import export_nir
    from ptssnn.inference import EmotionRecognizer
    from ptssnn.models import load_pretrained
    from ptssnn.snn import PLIF

    torch.set_num_threads(1)
    recognizer = EmotionRecognizer.load(model_dir)
    model = recognizer.model.eval()
    _, metadata = load_pretrained(model_dir)
    files = sorted((data_root / "casia").rglob("*.flac"))
    step = max(1, len(files) // clips)
    chosen = files[::step][:clips]
    work.mkdir(parents=True, exist_ok=True)
    reference: dict[str, Any] = {"clips": [], "model": str(model_dir)}
    for index, path in enumerate(chosen):
        # The deployment path: backbone → layer selection → frame pooling.
        x, _ = recognizer.head_input([recognizer.pool(recognizer.features(load_audio(path)))])
        features = x[0]  # [T, D] or [L, T, D]
        seen: dict[str, np.ndarray] = {}

        def keep(name: str, seen: dict[str, np.ndarray] = seen):
            def hook(_m: Any, _i: Any, out: Any) -> None:
                spikes = out[0] if isinstance(out, tuple) else out
                seen[name] = spikes[:, 0].detach().numpy()
            return hook

        hooks = [m.register_forward_hook(keep(n)) for n, m in model.named_modules()
                 if isinstance(m, PLIF)]
        with torch.inference_mode():
            logits = model(features[None]).float()[0].numpy()
        for h in hooks:
            h.remove()
        np.save(work / f"clip{index}.features.npy", features.numpy())
        np.savez(work / f"clip{index}.spikes.npz", **seen)
        reference["clips"].append({"file": str(path.relative_to(data_root)),
                                   "frames": int(features.shape[-2]),
                                   "logits": logits.tolist()})
    for target in ("snntorch", "norse", "sinabs", "nir"):
        report = export_nir(model, work / target, target=target, metadata=metadata)
        reference[f"export_{target}"] = {k: report[k] for k in
                                         ("dt", "max_abs_diff", "spikes_equal", "segments")}
    (work / "reference.json").write_text(json.dumps(reference, indent=1))
    print(json.dumps({k: v for k, v in reference.items() if k != "clips"}, indent=1)[:2000])


# ----------------------------------------------------------------------------- consumers
def _lif_names(graph: Any) -> list[str]:
    return [n for n, node in graph.nodes.items() if type(node).__name__ == "LIF"]


def _hooked(net: torch.nn.Module, names: list[str], store: dict[str, list[torch.Tensor]]):
    modules = dict(net.named_modules())
    hooks = []
    for name in names:
        def hook(_m: Any, _i: Any, out: Any, name: str = name) -> None:
            spikes = out[0] if isinstance(out, tuple) else out
            store.setdefault(name, []).append(spikes.detach().reshape(-1, spikes.shape[-1]))
        hooks.append(modules[name].register_forward_hook(hook))
    return hooks


def runner_for(consumer: str, dt: float):
    """``(graph, x [T, n]) → (out [T, m], spikes by node)`` using the consumer's importer."""

    def run(graph: Any, x: torch.Tensor):
        store: dict[str, list[torch.Tensor]] = {}
        names = _lif_names(graph)
        if consumer == "snntorch":
            from snntorch.import_nir import import_from_nir

            net = import_from_nir(graph)
            hooks = _hooked(net, names, store)
            outs = [net(x[t:t + 1])[0] for t in range(x.shape[0])]
            out = torch.cat(outs)
        elif consumer == "norse":
            import norse.torch

            net = norse.torch.from_nir(graph, dt=dt)
            hooks = _hooked(net, names, store)
            state, outs = None, []
            for t in range(x.shape[0]):
                y, state = net(x[t:t + 1], state)
                outs.append(y)
            out = torch.cat(outs)
        else:
            import sinabs

            net = sinabs.from_nir(graph, batch_size=1)
            if consumer == "sinabs-recipe":  # what sinabs's importer cannot say
                from sinabs.activation import MembraneReset, SingleSpike

                for module in net.modules():
                    if hasattr(module, "spike_fn"):
                        module.spike_fn, module.reset_fn = SingleSpike, MembraneReset()
            hooks = _hooked(net, names, store)
            out = net(x)
            out = out[0] if isinstance(out, tuple) else out
        for h in hooks:
            h.remove()
        return out.detach().float(), {k: torch.cat(v) for k, v in store.items()}

    return run


def run(work: Path, out_path: Path) -> None:
    from ptssnn.export import NIRExport

    torch.set_num_threads(1)
    reference = json.loads((work / "reference.json").read_text())
    results: dict[str, Any] = {
        "command": "benchmarks/nir_consumers.py run", "model": reference["model"],
        "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(),
        "versions": {}, "consumers": {},
    }
    for package in ("torch", "nir", "nirtorch", "snntorch", "norse", "sinabs"):
        try:
            results["versions"][package] = version(package)
        except Exception:
            results["versions"][package] = None
    for consumer in CONSUMERS:
        target = consumer.split("-")[0]
        entry: dict[str, Any] = {"target": target, "clips": []}
        try:
            export = NIRExport(work / target)
            entry["dt"] = export.dt
            runner = runner_for(consumer, export.dt)
            for index, clip in enumerate(reference["clips"]):
                features = np.load(work / f"clip{index}.features.npy")
                want_spikes = np.load(work / f"clip{index}.spikes.npz")
                got_spikes: dict[str, torch.Tensor] = {}
                started = time.perf_counter()
                logits = export.run(features, record=got_spikes, runner=runner).numpy()
                differing = total = 0
                for name, spikes in got_spikes.items():
                    want = want_spikes[name]
                    got = spikes.numpy().reshape(want.shape)
                    differing += int((got != want).sum())
                    total += int(want.sum())
                entry["clips"].append({
                    "file": clip["file"], "frames": clip["frames"],
                    "layers": len(got_spikes), "model_spikes": total,
                    "consumer_spikes": int(sum(float(s.sum()) for s in got_spikes.values())),
                    "differing_spikes": differing,
                    "max_abs_logit_diff": float(np.abs(logits - np.array(clip["logits"])).max()),
                    "seconds": round(time.perf_counter() - started, 2),
                })
            entry["spikes_identical"] = all(c["differing_spikes"] == 0 for c in entry["clips"])
            entry["max_abs_logit_diff"] = max(c["max_abs_logit_diff"] for c in entry["clips"])
        except Exception as error:
            entry["error"] = f"{type(error).__name__}: {error}"[:500]
        results["consumers"][consumer] = entry
        print(consumer, {k: v for k, v in entry.items() if k != "clips"}, flush=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="phase", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--clips", type=int, default=3)
    r = sub.add_parser("run")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--out", type=Path, default=Path("benchmarks/results/nir_consumers.json"))
    args = parser.parse_args()
    if args.phase == "prepare":
        prepare(args.model, args.data_root, args.work, args.clips)
    else:
        run(args.work, args.out)


if __name__ == "__main__":
    main()
