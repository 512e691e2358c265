"""Independent NIR tools load the exported segments unchanged and reproduce the spikes.

Skipped unless the consumers are installed (they need their own environment: see
``benchmarks/README.md``, "NIR consumers"); ``benchmarks/nir_consumers.py`` runs the same
check on a trained head and real features.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nir_heads import calibrated_model
from ptssnn.export import NIRExport, export_nir


def _run_with(consumer: str, dt: float):
    def run(graph, x):
        names = [n for n, node in graph.nodes.items() if type(node).__name__ == "LIF"]
        if consumer == "snntorch":
            from snntorch.import_nir import import_from_nir
            net = import_from_nir(graph)
        elif consumer == "norse":
            import norse.torch
            net = norse.torch.from_nir(graph, dt=dt)
        else:
            import sinabs
            from sinabs.activation import MembraneReset, SingleSpike
            net = sinabs.from_nir(graph, batch_size=1)
            for module in net.modules():  # the documented recipe: sinabs cannot read it
                if hasattr(module, "spike_fn"):
                    module.spike_fn, module.reset_fn = SingleSpike, MembraneReset()
        store: dict[str, list[torch.Tensor]] = {}

        def keep(name: str):
            def hook(_module, _inputs, out) -> None:
                spikes = out[0] if isinstance(out, tuple) else out
                store.setdefault(name, []).append(spikes.reshape(-1, spikes.shape[-1]))
            return hook

        modules = dict(net.named_modules())
        hooks = [modules[n].register_forward_hook(keep(n)) for n in names]
        if consumer == "sinabs":
            out = net(x)
        else:
            state, outs = None, []
            for t in range(x.shape[0]):
                y = net(x[t:t + 1]) if consumer == "snntorch" else net(x[t:t + 1], state)
                y, state = y if isinstance(y, tuple) else (y, None)
                outs.append(y)
            out = torch.cat(outs)
        for hook in hooks:
            hook.remove()
        out = out[0] if isinstance(out, tuple) else out
        return out.detach().float(), {k: torch.cat(v) for k, v in store.items()}
    return run


@pytest.mark.parametrize("preset", ["pts-snn", "neuromorphic"])
@pytest.mark.parametrize("consumer", ["snntorch", "norse", "sinabs"])
def test_consumer_reproduces_spikes_and_logits(consumer: str, preset: str,
                                               tmp_path: Path) -> None:
    pytest.importorskip(consumer, reason=f"{consumer} not installed (separate environment)")
    torch.manual_seed(0)
    model = calibrated_model(preset)
    export_nir(model, tmp_path, target=consumer, check=False)
    export = NIRExport(tmp_path)
    x = torch.randn(50, 80)
    want_spikes: dict[str, torch.Tensor] = {}
    want = export.run(x, record=want_spikes)
    got_spikes: dict[str, torch.Tensor] = {}
    got = export.run(x, record=got_spikes, runner=_run_with(consumer, export.dt))
    assert set(got_spikes) == set(want_spikes)
    for name, spikes in want_spikes.items():
        assert torch.equal(got_spikes[name].reshape(spikes.shape), spikes), name
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
