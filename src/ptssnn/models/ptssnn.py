"""The PTS-SNN head: frame features + mask → emotion logits.

::

    features [B, T, D_in] (or [B, L, T, D_in] → softmax-weighted layer sum)
      → tanh(ξ·LayerNorm(x))                          soft saturation (optional)
      → Linear(D_in, D) → LayerNorm                    u0: input currents [T, B, D]
      → MembraneCalibration(u0) → bias [B, N, D]       context from u0 only (no circularity)
      → N × SpikingShiftBlock(u, bias_i)               membrane-shortcut residual blocks
      → PLIF → masked mean over time (spikes, or the membrane stream)
      → dropout → Linear(D, C)

A block keeps the residual stream real-valued (the "membrane shortcut" of the Spike-driven
Transformer) so that every linear layer inside it is fed by spikes (additions only):
``s = PLIF(u + b)``, ``s' = TemporalShift(s)``, ``u ← u + LN(W2 · PLIF(LN(W1 · s')))``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ptssnn.errors import ModelConfigError
from ptssnn.models.config import PTSSNNConfig
from ptssnn.snn.calibration import MembraneCalibration
from ptssnn.snn.input_compiled import soft_saturation, standardised_layer_sum
from ptssnn.snn.neurons import feeds_products, make_neuron
from ptssnn.snn.norm import apply_norm, make_norm
from ptssnn.snn.norm_plif import layer_norm_plif
from ptssnn.snn.shift import TemporalShift
from ptssnn.snn.spike_linear import compiled_neuron, spike_linear

__all__ = ["PTSSNN", "SoftSaturation", "SpikingShiftBlock"]


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Initialise parameters from ``seed`` without disturbing the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _fed_by_spikes(layer: nn.Linear, spiking: bool) -> nn.Linear:
    layer.fed_by_spikes = spiking  # type: ignore[attr-defined]
    return layer


class SoftSaturation(nn.Module):
    """``tanh(ξ · LayerNorm(x))``: bounds the frozen features' dynamic range to (-1, 1).

    ``norm=False`` drops the per-frame LayerNorm (``tanh(ξ·x)``): on globally standardised
    input the range is already controlled, and the LayerNorm removes each frame's level
    across channels (for log-Mel features: its loudness)."""

    def __init__(self, dim: int, xi: float = 1.0, norm: bool = True) -> None:
        super().__init__()
        self.norm: nn.Module = nn.LayerNorm(dim) if norm else nn.Identity()
        self.xi = float(xi)

    def forward(self, x: torch.Tensor, compiled: bool = False) -> torch.Tensor:
        """``[..., D]`` → ``[..., D]``; ``compiled``: train through the one-pass kernels of
        :mod:`ptssnn.snn.input_compiled` where they apply (same values up to rounding)."""
        return soft_saturation(x, self.norm, self.xi, compiled)

    def extra_repr(self) -> str:
        return f"xi={self.xi}"


class SpikingShiftBlock(nn.Module):
    """Spiking temporal-shift block with a membrane shortcut.

    Args:
        dim: width D of the residual stream.
        hidden: width of the MLP.
        shift: the temporal shift (parameter-free).
        neuron: ``"plif"`` or ``"gelu"``.
        neuron_options: :func:`~ptssnn.snn.neurons.make_neuron` keywords (``params``,
            ``backend``).
    """

    def __init__(self, dim: int, hidden: int, shift: TemporalShift, neuron: str,
                 neuron_options: dict, norm: str = "layer") -> None:
        super().__init__()
        spiking = neuron == "plif"
        self.neuron_in = feeds_products(make_neuron(neuron, **neuron_options))
        self.shift = shift
        self.fc1 = _fed_by_spikes(nn.Linear(dim, hidden), spiking)
        self.norm1 = make_norm(norm, hidden)
        self.neuron_hidden = feeds_products(make_neuron(neuron, **neuron_options))
        self.fc2 = _fed_by_spikes(nn.Linear(hidden, dim), spiking)
        self.norm2 = make_norm(norm, dim)

    def mlp(self, s: torch.Tensor, mask: torch.Tensor | None,
            v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Shifted spikes ``[T, B, D]`` → residual update ``[T, B, D]`` and hidden membrane."""
        current = spike_linear(self.fc1, s, compiled_neuron(self.neuron_in))
        h, v_hidden = layer_norm_plif(self.norm1, self.neuron_hidden, current, mask, v)
        update = spike_linear(self.fc2, h, compiled_neuron(self.neuron_hidden))
        return apply_norm(self.norm2, update, mask), v_hidden

    def forward(self, u: torch.Tensor, bias: torch.Tensor | None,
                mask: torch.Tensor | None) -> torch.Tensor:
        """``u [T, B, D]`` (+ bias ``[B, D]`` or ``[T, B, D]``) → ``[T, B, D]``."""
        s = self.neuron_in(u, bias=bias, mask=mask)  # zero on padded frames (PLIF and GELU)
        shifted = self.shift(s, mask, zero_padded=True, compiled=compiled_neuron(self.neuron_in))
        delta, _ = self.mlp(shifted, mask)
        return u + delta


def layer_prior_logits(layers: int, width: float) -> torch.Tensor:
    """Initial logits of the learned layer sum: a Gaussian bump of ``width`` hidden states
    around the middle one (index ``layers // 2``), or uniform (zeros) when ``width`` is 0."""
    if width <= 0:
        return torch.zeros(layers)
    offset = torch.arange(layers, dtype=torch.float32) - layers // 2
    return -0.5 * (offset / width) ** 2


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None,
                 zero_padded: bool = False) -> torch.Tensor:
    """Mean over time of ``x [T, B, D]`` counting real frames only → ``[B, D]``.

    ``zero_padded``: ``x`` is already zero on padded frames (a neuron layer's output), so it
    is summed as it is (the same sum: a pass over ``x`` and its gradient fewer)."""
    if mask is None:
        return x.mean(0)
    m = mask.to(x.dtype)
    total = x.sum(0) if zero_padded else (x * m[..., None]).sum(0)
    return total / m.sum(0).clamp(min=1.0)[:, None]


def _spread(mean_square: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Standard deviation over time from the running moments (floored for a finite gradient:
    a silent or always-firing neuron has zero spread)."""
    return (mean_square - mean * mean).clamp(min=0.0).add(1e-6).sqrt()


class PTSSNN(nn.Module):
    """PTS-SNN head (and its ablations / ANN twin, by config).

    Args:
        config: the model configuration (see :class:`PTSSNNConfig`).

    Call ``model(features, mask)`` with ``features [B, T, D_in]`` (or ``[B, L, T, D_in]`` when
    ``config.input_layers = L > 1``) and ``mask [B, T]`` (bool, True = real frame; None = all
    real) to get logits ``[B, C]``.
    """

    def __init__(self, config: PTSSNNConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        c = config
        spiking = c.neuron == "plif"
        options = (dict(params=c.plif_parameters(), backend=c.plif_backend) if spiking
                   else {})
        # Per-channel standardisation of the frozen features, set from the training split
        # (``set_input_statistics``); identity until then. Buffers, so checkpoints carry them.
        self.register_buffer("input_mean", torch.zeros(c.input_layers, c.input_dim))
        self.register_buffer("input_std", torch.ones(c.input_layers, c.input_dim))
        with _seeded(c.seed):
            self.layer_weights = (nn.Parameter(layer_prior_logits(c.input_layers,
                                                                  c.layer_prior))
                                  if c.input_layers > 1 else None)
            self.saturation = SoftSaturation(c.input_dim, c.saturation_xi,
                                             c.saturation_norm) if c.saturation else None
            self.projection = _fed_by_spikes(nn.Linear(c.input_dim, c.width), False)
            self.projection_norm = make_norm(c.norm, c.width)
            self.calibration = None
            if c.context != "none":
                targets = c.num_blocks if c.context == "bias" else 1
                self.calibration = MembraneCalibration(
                    c.width, c.num_prompts, targets, c.attention_heads, c.neuron, options, c.norm)
            shift = TemporalShift(c.shift_later, c.shift_earlier)
            self.blocks = nn.ModuleList(
                SpikingShiftBlock(c.width, c.block_hidden, shift, c.neuron, options, c.norm)
                for _ in range(c.num_blocks))
            self.output_neuron = make_neuron(c.neuron, **options)
            self.dropout = nn.Dropout(c.dropout)
            # Fed by the pooled firing rates (real values), once per utterance.
            readout_dim = c.width * (2 if c.readout == "mean_std" else 1)
            self.classifier = _fed_by_spikes(nn.Linear(readout_dim, c.num_classes), False)
            self.classifier.per_utterance = True  # type: ignore[attr-defined]

    # ----------------------------------------------------------------- bookkeeping
    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per top-level module (``layer_weights`` included if present)."""
        counts: dict[str, int] = {}
        for name, param in self.named_parameters():
            if param.requires_grad:
                top = name.split(".")[0]
                if top == "blocks":
                    top = ".".join(name.split(".")[:2])
                counts[top] = counts.get(top, 0) + param.numel()
        return counts

    def num_trainable_parameters(self) -> int:
        """Total trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def standardises_input(self) -> bool:
        """Whether the head standardises its input (all presets but ``vanilla-snn``)."""
        return bool(self.config.standardise_input)

    def set_input_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise inputs with these per-channel moments (``[L, D]`` or ``[D]``).

        Whisper-style encoders have a few channels hundreds of times larger than the rest;
        without this the per-frame LayerNorm of the saturation is dominated by them.
        """
        shape = self.input_mean.shape
        mean = torch.as_tensor(mean, dtype=torch.float32)
        std = torch.as_tensor(std, dtype=torch.float32)
        if mean.dim() == 1:
            mean, std = mean[None], std[None]
        if mean.shape != shape or std.shape != shape:
            raise ModelConfigError(
                f"input statistics must be [{shape[0]}, {shape[1]}] (or [{shape[1]}] for one "
                f"layer), got mean {tuple(mean.shape)} and std {tuple(std.shape)}")
        if not bool((std > 0).all()):
            raise ModelConfigError("input standard deviations must be > 0")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def standardise_features(self, features: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel (and per layer for ``[B, L, T, D]``)."""
        if not self.config.standardise_input:
            return features
        mean, std = self.input_mean, self.input_std
        if features.dim() == 4:
            # A one-layer stack must not broadcast against several layers' moments.
            if mean.shape[0] > 1 and features.shape[1] != mean.shape[0]:
                raise ModelConfigError(
                    f"features must be [B, {mean.shape[0]}, T, D] for this model "
                    f"(input_layers={mean.shape[0]}), got {tuple(features.shape)}")
            mean, std = mean[:, None, :], std[:, None, :]
        else:
            mean, std = mean[0], std[0]
        return (features.to(mean.dtype) - mean) / std

    # ----------------------------------------------------------------- forward
    def _combine_layers(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` or ``[B, L, T, D]`` → ``[B, T, D]``."""
        if self.layer_weights is None:
            if features.dim() == 4 and features.shape[1] == 1:
                return features[:, 0]
            if features.dim() != 3:
                raise ModelConfigError(
                    f"features must be [B, T, D] (got {tuple(features.shape)}); build the model "
                    "with input_layers=L for [B, L, T, D] features")
            return features
        if features.dim() != 4 or features.shape[1] != self.layer_weights.numel():
            raise ModelConfigError(
                f"features must be [B, {self.layer_weights.numel()}, T, D] for this model "
                f"(input_layers={self.layer_weights.numel()}), got {tuple(features.shape)}")
        weights = torch.softmax(self.layer_weights, 0).to(features.dtype)
        return torch.einsum("bltd,l->btd", features, weights)

    def _embed(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``[T, B, D_in]`` → input currents ``[T, B, D]``."""
        if self.saturation is not None:
            x = self.saturation(x, compiled=compiled_neuron(self.output_neuron))
        return apply_norm(self.projection_norm, self.projection(x), mask)

    def _prepare(self, features: torch.Tensor, mask: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if features.shape[-1] != self.config.input_dim:
            raise ModelConfigError(
                f"features have {features.shape[-1]} channels, the model expects input_dim="
                f"{self.config.input_dim}")
        x = None
        if self.config.standardise_input:  # one pass in compiled training (same values)
            weights = (None if self.layer_weights is None
                       else torch.softmax(self.layer_weights, 0))
            x = standardised_layer_sum(features, self.input_mean, self.input_std, weights,
                                       compiled=compiled_neuron(self.output_neuron))
        if x is None:
            x = self._combine_layers(self.standardise_features(features))
            # Time-major and contiguous: the saturation's tanh and LayerNorm run several
            # times slower on the transposed view than one copy costs.
            x = x.transpose(0, 1).to(self.projection.weight.dtype).contiguous()
        m = None if mask is None else mask.transpose(0, 1).to(torch.bool)
        if m is not None and m.shape != x.shape[:2]:
            raise ModelConfigError(f"mask must be [B, T] = {tuple(x.shape[1::-1])}, "
                             f"got {tuple(mask.shape)}")
        return x, m

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for a batch of utterances.

        Args:
            features: ``[B, T, D_in]``, or ``[B, L, T, D_in]`` with ``input_layers = L``.
            mask: ``[B, T]`` bool, True = real frame (None: every frame is real).

        Returns:
            Logits ``[B, C]``.
        """
        x, m = self._prepare(features, mask)
        u = self._embed(x, m)
        bias = readout = None
        if self.calibration is not None:
            if self.config.context == "bias":
                causal = self.config.calibration_context == "causal"
                bias, _ = self.calibration(u, m, causal=causal)
            else:
                context, _ = self.calibration(u, m)
                readout = context[:, 0]
        for i, block in enumerate(self.blocks):
            u = block(u, None if bias is None else bias[..., i, :], m)
        out = self.output_neuron(u, mask=m)
        spikes = self.config.pooling == "spikes"  # zero on padded frames (PLIF and GELU)
        signal = out if spikes else u
        mean = _masked_mean(signal, m, zero_padded=spikes)
        pooled = mean if readout is None else mean + readout
        if self.config.readout == "mean_std":
            pooled = torch.cat([pooled, _spread(_masked_mean(signal * signal, m, spikes), mean)],
                               -1)
        return self.classifier(self.dropout(pooled))

    # ----------------------------------------------------------------- streaming
    def init_stream_state(self, batch_size: int) -> dict:
        """Empty state for :meth:`stream_step` (start of a stream of ``batch_size`` clips)."""
        p = self.projection.weight
        d = self.config.width
        blocks = [{
            "v_in": None, "v_hidden": None,
            "prev_s": p.new_zeros(batch_size, d),
            "prev_m": torch.zeros(batch_size, dtype=torch.bool, device=p.device),
            "pend_s": p.new_zeros(0, batch_size, d), "pend_u": p.new_zeros(0, batch_size, d),
            "pend_m": torch.zeros(0, batch_size, dtype=torch.bool, device=p.device),
            "pend_b": None,
        } for _ in self.blocks]
        return {"calibration": None, "blocks": blocks, "output": None,
                "pool_sum": p.new_zeros(batch_size, d), "pool_count": p.new_zeros(batch_size),
                "pool_square": p.new_zeros(batch_size, d),
                "readout": None, "frames": 0}

    def _block_stream(self, index: int, u: torch.Tensor, m: torch.Tensor,
                      b: torch.Tensor | None, st: dict, final: bool
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict]:
        """Advance block ``index`` by new frames; emit the frames whose shift is complete.

        The shift "one step earlier" needs frame t+1, so a block holds back its newest frame
        until the next one arrives (``final=True`` flushes it with zero fill, as ``forward``
        does at the end of a clip). ``b`` carries each frame's bias for every block
        ``[n, B, N, D]``.
        """
        block = self.blocks[index]
        v_in = st["v_in"]
        if u.shape[0]:
            s, v_in = block.neuron_in(u, bias=None if b is None else b[..., index, :], mask=m,
                                      v=v_in, return_state=True)
        else:
            s = u
        all_s = torch.cat([st["pend_s"], s])
        all_u = torch.cat([st["pend_u"], u])
        all_m = torch.cat([st["pend_m"], m])
        parts_b = [p for p in (st["pend_b"], b) if p is not None]
        all_b = torch.cat(parts_b) if parts_b else None
        total = all_s.shape[0]
        ready = total if final else max(total - 1, 0)
        window = [st["prev_s"][None], all_s]
        window_m = [st["prev_m"][None], all_m]
        if final:
            window.append(torch.zeros_like(st["prev_s"])[None])
            window_m.append(torch.zeros_like(st["prev_m"])[None])
        v_hidden = st["v_hidden"]
        if ready:
            shifted = block.shift(torch.cat(window), torch.cat(window_m))[1:1 + ready]
            delta, v_hidden = block.mlp(shifted, all_m[:ready], v_hidden)
            out_u = all_u[:ready] + delta
        else:
            out_u = all_u[:0]
        new_state = {
            "v_in": v_in, "v_hidden": v_hidden,
            "prev_s": all_s[ready - 1] if ready else st["prev_s"],
            "prev_m": all_m[ready - 1] if ready else st["prev_m"],
            "pend_s": all_s[ready:], "pend_u": all_u[ready:], "pend_m": all_m[ready:],
            "pend_b": None if all_b is None else all_b[ready:],
        }
        return out_u, all_m[:ready], None if all_b is None else all_b[:ready], new_state

    def _pool_update(self, u: torch.Tensor, m: torch.Tensor, v_out: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Output neurons on emitted frames → (masked sum ``[B, D]``, masked sum of squares
        ``[B, D]``, count ``[B]``, state)."""
        if u.shape[0] == 0:
            zeros = u.new_zeros(u.shape[1:])
            return zeros, zeros, u.new_zeros(u.shape[1]), v_out
        out, v_out = self.output_neuron(u, mask=m, v=v_out, return_state=True)
        pooled_input = out if self.config.pooling == "spikes" else u
        weighted = pooled_input * m.to(u.dtype)[..., None]
        return (weighted.sum(0), (weighted * pooled_input).sum(0), m.to(u.dtype).sum(0),
                v_out)

    def stream_step(self, features_chunk: torch.Tensor, state: dict,
                    mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Feed the next chunk of a live stream; get the logits "as if the stream ended now".

        Carried across chunks: every PLIF membrane, each block's temporal-shift boundary
        (the previous frame's spikes and the newest frame, held back until its successor
        arrives), the running pooled sum and frame count, and the running SSLA context.

        Relation to :meth:`forward` (tested): the logits after the chunks ``x_1 … x_k`` equal
        ``forward(cat(x_1 … x_k))`` exactly (up to float rounding) when
        ``config.calibration_context == "causal"``, and for any model when the stream is a
        single chunk. With the default ``"global"`` calibration the context is not known until
        the clip ends, so online each chunk's frames are calibrated with the running context
        of everything received up to the end of that chunk (chunk-causal); the ``+ssla``
        read-out always uses the running context of all frames so far.

        Args:
            features_chunk: ``[B, t, D_in]`` (or ``[B, L, t, D_in]``).
            state: from :meth:`init_stream_state` or the previous call.
            mask: ``[B, t]`` bool (None = all real).

        Returns:
            ``(logits [B, C], new_state)``; the input state is not modified.
        """
        x, m = self._prepare(features_chunk, mask)
        if m is None:
            m = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        u = self._embed(x, m)
        calibration_state = state["calibration"]
        readout, b = state["readout"], None
        if self.calibration is not None:
            if self.config.context == "bias":
                causal = self.config.calibration_context == "causal"
                bias, calibration_state = self.calibration(u, m, causal=causal,
                                                           state=calibration_state)
                b = bias if causal else bias.unsqueeze(0).expand(u.shape[0], *bias.shape)
            else:
                context, calibration_state = self.calibration(u, m, state=calibration_state)
                readout = context[:, 0]
        block_states = []
        for i in range(len(self.blocks)):
            u, m, b, block_state = self._block_stream(i, u, m, b, state["blocks"][i], False)
            block_states.append(block_state)
        pool_sum, pool_square, pool_count, v_out = self._pool_update(u, m, state["output"])
        new_state = {
            "calibration": calibration_state, "blocks": block_states, "output": v_out,
            "pool_sum": state["pool_sum"] + pool_sum,
            "pool_square": state["pool_square"] + pool_square,
            "pool_count": state["pool_count"] + pool_count,
            "readout": readout, "frames": state["frames"] + x.shape[0],
        }
        return self._stream_logits(new_state), new_state

    def _stream_logits(self, state: dict) -> torch.Tensor:
        """Flush the held-back frames (without committing them) and classify."""
        ref = state["pool_sum"]
        batch, d = ref.shape
        u = ref.new_zeros(0, batch, d)
        m = torch.zeros(0, batch, dtype=torch.bool, device=ref.device)
        b = None
        for i in range(len(self.blocks)):
            u, m, b, _ = self._block_stream(i, u, m, b, state["blocks"][i], True)
        pool_sum, pool_square, pool_count, _ = self._pool_update(u, m, state["output"])
        count = (state["pool_count"] + pool_count).clamp(min=1.0)[:, None]
        mean = (state["pool_sum"] + pool_sum) / count
        pooled = mean if state["readout"] is None else mean + state["readout"]
        if self.config.readout == "mean_std":
            pooled = torch.cat([pooled, _spread((state["pool_square"] + pool_square) / count,
                                                mean)], -1)
        return self.classifier(self.dropout(pooled))
