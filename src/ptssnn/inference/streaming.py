"""Streaming recognition: a running emotion label from audio that arrives chunk by chunk.

How the two halves run online:

* **Backbone on chunks — a sliding window with left context.** Each chunk of ``chunk_s``
  seconds (a whole number of 20 ms frames) is encoded together with the ``left_context_s``
  seconds of audio heard just before it; only the frames of the new chunk are kept. The
  context gives the encoder's convolutions and self-attention the past they would see
  offline, so chunk-edge frames come out close to an offline pass (they are not identical:
  a transformer backbone attends over the window only, Whisper's unpadded positional table
  restarts at each window, and its log-Mel clamp is relative to the window's maximum).
  Cost per chunk is bounded by ``chunk_s + left_context_s (+ lookahead_s)`` of audio,
  whatever the stream's length, so latency stays bounded. An optional look-ahead
  (``lookahead_s``) lets the encoder see that much audio after the chunk before the chunk's
  frames are emitted: a bidirectional encoder's (Whisper's) chunk-edge frames then come much
  closer to offline, at the price of that much extra latency (measured trade-off in
  ``benchmarks/README.md``).
* **Head on chunks — carried spiking state.** The head's frames go through
  ``model.stream_step(chunk, state)``, which carries the PLIF membrane potentials, the
  temporal-shift boundary frames, the running pooled sum and the running calibration context
  from chunk to chunk (see ``ptssnn.models``). The running label after each chunk is the
  argmax of the logits for everything heard so far.
* **The calibration's global context online.** Offline, membrane calibration summarises the
  whole utterance (SSLA over all frames) into the prompts that set the PLIF bias voltages.
  A stream has no "whole utterance" yet, so the model's streaming path accumulates that
  context causally: the bias used for frame ``t`` comes from frames ``≤ t`` (running sums
  of the linear attention), converging to the offline context as the stream goes on. The
  first frames of a stream therefore see a partial context; the measured agreement between
  streaming and offline labels (``benchmarks/README.md``, section "Inference") says how much
  that costs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ptssnn.inference.results import StreamUpdate

if TYPE_CHECKING:
    from ptssnn.features.profile import SpeakerProfile
    from ptssnn.inference.recognizer import EmotionRecognizer


class StreamingSession:
    """One live stream: feed audio with :meth:`push`, get a running label per chunk.

    Example::

        session = recognizer.stream(chunk_s=0.5)
        for block in microphone_blocks():          # any size, any rate
            for update in session.push(block, 48000):
                print(update.end_s, update.label)
        last = session.flush()

    Attributes:
        chunk_s: Audio per update (seconds).
        left_context_s: Audio re-encoded before each chunk (seconds).
        lookahead_s: Audio after each chunk that the backbone may see before the chunk's
            frames are emitted (seconds); adds that much latency.
        updates: Every update so far, in order.
    """

    def __init__(
        self,
        recognizer: EmotionRecognizer,
        *,
        chunk_s: float = 0.5,
        left_context_s: float = 2.0,
        lookahead_s: float = 0.0,
        profile: SpeakerProfile | None = None,
        update_profile: bool = False,
    ) -> None:
        self.recognizer = recognizer
        if update_profile and profile is None:
            raise ValueError("update_profile needs a profile to update")
        # Fixed for the whole stream: the profile grows only when the stream ends.
        self._moments = recognizer.moments_for(profile)
        self.profile = profile
        self._update_profile = update_profile
        self._heard_hidden: list[torch.Tensor] = []
        rate = recognizer.sample_rate
        self._hop = rate // recognizer.frame_rate  # samples per feature frame
        chunk = round(chunk_s * rate)
        if chunk <= 0 or chunk % self._hop:
            raise ValueError(
                f"chunk_s={chunk_s} must be a positive multiple of one frame "
                f"({1000 / recognizer.frame_rate:g} ms)"
            )
        if left_context_s < 0 or lookahead_s < 0:
            raise ValueError(
                f"left_context_s and lookahead_s must be ≥ 0, got {left_context_s}, {lookahead_s}"
            )
        self._chunk = chunk
        # Whole frames of context keep the chunk's frames on the offline frame grid.
        self._context = round(left_context_s * rate) // self._hop * self._hop
        self.chunk_s = chunk / rate
        self.left_context_s = self._context / rate
        self._lookahead = round(lookahead_s * rate) // self._hop * self._hop
        self.lookahead_s = self._lookahead / rate
        self._pending = np.zeros(0, dtype=np.float32)
        self._history = np.zeros(0, dtype=np.float32)
        self._resampler: Any = None
        self._resampler_rate: int | None = None
        self._state = recognizer.model.init_stream_state(1)
        self._heard = 0  # samples processed so far
        self._gain = 1.0  # peak policy: lowered by a block whose peak exceeds 1
        self._frames: torch.Tensor | None = None  # backbone frames waiting for a full group
        self.updates: list[StreamUpdate] = []

    @property
    def label(self) -> str | None:
        """The current running label (``None`` before the first chunk)."""
        return self.updates[-1].label if self.updates else None

    def push(self, samples: Any, sample_rate: int | None = None) -> list[StreamUpdate]:
        """Add audio; process every complete chunk.

        Args:
            samples: ``[N]`` mono or ``[N, C]`` samples (float in [-1, 1]).
            sample_rate: Their rate (Hz); default the recogniser's rate. A stream must keep
                one rate; it is resampled incrementally (soxr streaming resampler).

        Returns:
            One update per chunk completed by this call (possibly none).

        Raises:
            AudioError: What :func:`ptssnn.audio.condition_waveform` refuses in any audio:
                NaN/inf samples, a shape other than ``[N]`` / ``[N, C]``, more than 8
                channels, a sample rate outside 4-384 kHz, an empty block.
            ValueError: A change of sample rate within the stream.
        """
        from ptssnn.audio import condition_waveform

        rate = sample_rate or self.recognizer.sample_rate
        # The one audio entry, as offline; a block may be short or quiet (a pause), and the
        # stream's own resampler keeps the signal continuous across blocks.
        wave = condition_waveform(
            samples,
            rate,
            target_rate=None,
            source="<stream>",
            min_seconds=0.0,
            reject_silence=False,
            normalise_peak=False,
        )
        # Peak policy online: the whole signal's peak is not known yet, so a block louder
        # than any before lowers the gain for it and what follows (never raised again).
        peak = float(np.max(np.abs(wave)))
        if peak * self._gain > 1.0:
            self._gain = 1.0 / peak
        if self._gain != 1.0:
            wave *= self._gain
        if rate != self.recognizer.sample_rate:
            wave = self._resample(wave, rate, last=False)
        self._pending = np.concatenate([self._pending, wave])
        out = []
        while self._pending.size >= self._chunk + self._lookahead:
            chunk, self._pending = self._pending[: self._chunk], self._pending[self._chunk :]
            out.append(self._process(chunk, ahead=self._pending[: self._lookahead]))
        return out

    def flush(self) -> StreamUpdate | None:
        """End of stream: process what is left (a shorter last chunk) and any held frames.

        Returns:
            The final update, or ``None`` when nothing was left to process.
        """
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            self._pending = np.concatenate([self._pending, tail.astype(np.float32)])
        # The whole tail: the backbone frames it exactly as offline (a piece of a frame may
        # still add one, e.g. Whisper's framing counts a last half frame).
        chunk, self._pending = self._pending, np.zeros(0, dtype=np.float32)
        if not chunk.size and self._frames is None:
            update = None
        else:
            update = self._process(chunk, last=True)
        if self._update_profile and self._heard_hidden:
            # The whole stream counts as one clip of the speaker.
            self.profile.update(torch.cat(self._heard_hidden, dim=-2))  # type: ignore[union-attr]
            self._heard_hidden = []
        return update

    def run(self, waveform: Any, sample_rate: int | None = None) -> list[StreamUpdate]:
        """Stream a whole recording through the session, as a live source would."""
        updates = self.push(waveform, sample_rate)
        last = self.flush()
        return [*updates, last] if last is not None else updates

    # ------------------------------------------------------------------ internals
    def _resample(self, wave: np.ndarray, rate: int, *, last: bool) -> np.ndarray:
        import soxr

        if self._resampler is None:
            from ptssnn.audio import RESAMPLE_QUALITY

            self._resampler = soxr.ResampleStream(
                rate, self.recognizer.sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )
            self._resampler_rate = rate
        elif rate != self._resampler_rate:
            raise ValueError(
                f"the stream started at {self._resampler_rate} Hz and cannot change to {rate} Hz"
            )
        return self._resampler.resample_chunk(wave, last=last).astype(np.float32)

    def _process(
        self, chunk: np.ndarray, *, ahead: np.ndarray | None = None, last: bool = False
    ) -> StreamUpdate:
        recognizer = self.recognizer
        start = time.perf_counter()
        window = np.concatenate([self._history, chunk])
        backbone = recognizer.backbone
        before = backbone.num_frames(self._history.size)
        new_frames = backbone.num_frames(window.size) - before
        if new_frames > 0:
            # The look-ahead audio is encoded too (the encoder attends to it) but its own
            # frames are dropped: they are emitted with the next chunk.
            encoded = window if ahead is None or not ahead.size else np.concatenate([window, ahead])
            hidden = recognizer.hidden_states(encoded)[..., before : before + new_frames, :]
            if self._update_profile:
                self._heard_hidden.append(recognizer.pipeline.to_storage(hidden))
            fresh = recognizer.pipeline.frames(hidden, self._moments)
            frames = fresh if self._frames is None else torch.cat([self._frames, fresh], dim=-2)
        else:
            frames = self._frames
        backbone_done = time.perf_counter()
        # The head reads groups of `frame_pool` frames: pass the complete groups on, keep
        # the rest for the next chunk (the last, shorter group only at the end of the stream).
        pipeline = recognizer.pipeline
        features = None
        if frames is not None:
            count = frames.shape[-2]
            usable = count if last else count // pipeline.frame_pool * pipeline.frame_pool
            if usable:
                features = pipeline.pool(frames[..., :usable, :])
            self._frames = frames[..., usable:, :] if usable < count else None
        if features is not None:
            x, _ = pipeline.collate([features])
            with torch.inference_mode():
                logits, self._state = recognizer.model.stream_step(x, self._state)
            probs = torch.softmax(logits.float(), dim=-1)[0]
        elif self.updates:
            probs = torch.tensor(list(self.updates[-1].probabilities.values()))
        else:
            probs = torch.full((len(recognizer.labels),), 1.0 / len(recognizer.labels))
        end = time.perf_counter()
        self._history = window[-self._context :] if self._context else window[:0]
        self._heard += chunk.size
        update = StreamUpdate(
            end_s=self._heard / recognizer.sample_rate,
            label=recognizer.labels[int(probs.argmax())],
            probabilities=recognizer._named(probs),
            latency_ms=(end - start) * 1000,
            chunk_s=chunk.size / recognizer.sample_rate,
            backbone_ms=(backbone_done - start) * 1000,
            head_ms=(end - backbone_done) * 1000,
        )
        self.updates.append(update)
        return update
