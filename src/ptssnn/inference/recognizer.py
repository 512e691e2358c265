"""``EmotionRecognizer``: a trained model directory as a ready-to-use emotion recogniser.

Pipeline per recording: audio (any rate, mono or multi-channel) → resample to the backbone's
rate (soxr, the loader's quality) → analysis windows (:func:`~ptssnn.inference.plan_windows`)
→ frozen backbone per window → the model card's :class:`~ptssnn.features.FeaturePipeline`
(the training code's own layer selection, frame pooling, dtype policy and collation: all
windows in one padded, masked batch) → spiking head → softmax per window → overall
probabilities = the duration-weighted mean of the windows' probabilities.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ptssnn.errors import AudioError, CheckpointError
from ptssnn.features.enrolment import SpeakerPrior, new_profile, pipeline_moments
from ptssnn.inference.results import Prediction, SegmentPrediction, Timings
from ptssnn.inference.windows import plan_windows
from ptssnn.jsonio import dumps as strict_json
from ptssnn.models.card import ModelCard

if TYPE_CHECKING:
    from ptssnn.backbones import Backbone
    from ptssnn.features.pipeline import FeaturePipeline, Moments
    from ptssnn.features.profile import SpeakerProfile
    from ptssnn.inference.streaming import StreamingSession

#: Default analysis window and hop for long recordings (seconds). Emotion corpora clips are
#: 1-8 s long, so anything up to the window is analysed whole, exactly as in training.
DEFAULT_WINDOW_S = 8.0
DEFAULT_HOP_S = 4.0
#: Longest recording ``predict``/``predict_file`` accept by default (seconds).
DEFAULT_MAX_SECONDS = 600.0
#: Shortest input: the backbones need a few frames (and training clips are ≥ 0.25 s).
MIN_SECONDS = 0.25


class EmotionRecognizer:
    """Frozen backbone + trained spiking head + label names, for prediction on raw audio.

    Build one with :meth:`load`. Prediction is thread-safe (inference mode, no mutable
    state), which the HTTP service relies on.

    Attributes:
        model: The spiking head (``ptssnn.models.PTSSNN``), in eval mode.
        backbone: The frozen encoder named in the model card.
        card: The model directory's deployment metadata.
        pipeline: The card's feature pipeline (hidden states → head input).
        window_s: Analysis window for long recordings (seconds).
        hop_s: Hop between analysis windows (seconds).
        max_seconds: Longest accepted recording (seconds).
        speaker_prior: Global moments at the pipeline's input, for speaker profiles
            (``None``: the model directory predates enrolment and takes no profiles).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        backbone: Backbone,
        card: ModelCard,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        hop_s: float = DEFAULT_HOP_S,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        model_dir: str | Path | None = None,
        speaker_prior: SpeakerPrior | None = None,
    ) -> None:
        # Validate the window now rather than on the first long file.
        plan_windows(1, card.sample_rate, window_s, hop_s)
        self.model = model.eval()
        self.backbone = backbone
        self.card = card
        self.pipeline: FeaturePipeline = card.pipeline
        self.window_s = float(window_s)
        self.hop_s = float(hop_s)
        self.max_seconds = float(max_seconds)
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.speaker_prior = speaker_prior
        if speaker_prior is not None and speaker_prior.mean.shape != (
                backbone.num_hidden_states, backbone.hidden_size):
            raise CheckpointError(
                f"the speaker prior holds {speaker_prior.mean.shape} moments but backbone "
                f"{backbone.name!r} has {backbone.num_hidden_states} x {backbone.hidden_size}")
        self._input_layers = int(getattr(getattr(model, "config", None), "input_layers", 1) or 1)
        selected = self.pipeline.input_layers(backbone.num_hidden_states)
        if self._input_layers > 1 and selected != self._input_layers:
            raise CheckpointError(
                f"the head reads {self._input_layers} hidden states but layer selection "
                f"{card.layers!r} selects {selected} of backbone {backbone.name!r}"
            )
        if self._input_layers == 1 and selected != 1:
            raise CheckpointError(
                f"the head reads one hidden state but layer selection {card.layers!r} selects "
                f"{selected}; use a single layer or 'mean:...' when training"
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        *,
        backbone: Backbone | None = None,
        window_s: float = DEFAULT_WINDOW_S,
        hop_s: float = DEFAULT_HOP_S,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        check_backbone: bool = True,
    ) -> EmotionRecognizer:
        """Load a model directory written by ``ptssnn train`` (or :func:`save_recognizer`).

        Args:
            model_dir: The directory (``model.safetensors`` + ``config.json``).
            backbone: An already loaded backbone to reuse (several recognisers, tests);
                by default the one named in the model card is loaded.
            window_s: Analysis window for long recordings (seconds).
            hop_s: Hop between windows (seconds).
            max_seconds: Longest accepted recording (seconds).
            check_backbone: Refuse a backbone whose ``identity()`` (weights hash, front end)
                differs from the one the head was trained on.

        Raises:
            CheckpointError: Missing/inconsistent directory, or a backbone mismatch.
            BackboneUnavailableError: The backbone's weights or package are not installed.
        """
        from ptssnn.backbones import load_backbone
        from ptssnn.models import load_pretrained

        directory = Path(model_dir)
        if not directory.is_dir():
            raise CheckpointError(
                f"{directory}: no such model directory (create one with `ptssnn train`)"
            )
        model, metadata = load_pretrained(directory)
        card = ModelCard.from_metadata(metadata, directory)
        if backbone is None:
            backbone = load_backbone(card.backbone, **card.backbone_options)
        if check_backbone and card.backbone_identity:
            found = _jsonable(backbone.identity())
            if found != card.backbone_identity:
                raise CheckpointError(
                    f"{directory}: the head was trained on backbone {card.backbone_identity} "
                    f"but {found} was loaded; install the same backbone weights (or pass "
                    "check_backbone=False to accept different features knowingly)"
                )
        num_classes = _num_classes(model)
        if num_classes is not None and num_classes != len(card.labels):
            raise CheckpointError(
                f"{directory}: the head has {num_classes} outputs but the card lists "
                f"{len(card.labels)} labels {list(card.labels)}"
            )
        return cls(
            model,
            backbone,
            card,
            window_s=window_s,
            hop_s=hop_s,
            max_seconds=max_seconds,
            model_dir=directory,
            speaker_prior=SpeakerPrior.load(directory),
        )

    # ------------------------------------------------------------------ properties
    @property
    def labels(self) -> tuple[str, ...]:
        """Class names in logit order."""
        return self.card.labels

    @property
    def sample_rate(self) -> int:
        """Audio rate the backbone expects (Hz)."""
        return self.card.sample_rate

    @property
    def frame_rate(self) -> int:
        """Feature frames per second."""
        return self.card.frame_rate

    # ------------------------------------------------------------------ building blocks
    def prepare_waveform(
        self, waveform: Any, sample_rate: int, *, source: str = "<waveform>"
    ) -> np.ndarray:
        """Check, down-mix and resample raw audio to the backbone's rate.

        Exactly :func:`ptssnn.audio.condition_waveform` with this recogniser's limits, so an
        array and its file (:meth:`predict_file`) are treated alike.

        Args:
            waveform: ``[N]`` mono or ``[N, C]`` (soundfile layout) samples, float in [-1, 1]
                (a louder signal is scaled down to peak 1; integers are scaled as PCM).
            sample_rate: Rate of ``waveform`` in Hz.
            source: Name used in error messages.

        Returns:
            ``[N']`` float32 at :attr:`sample_rate`.

        Raises:
            AudioError: Empty, non-finite, silent, too short, too long, with too many
                channels or a sample rate outside 4-384 kHz.
        """
        from ptssnn.audio import condition_waveform

        # The one audio entry, with the rules files get (predict_file decodes, then the same).
        return condition_waveform(
            waveform,
            sample_rate,
            target_rate=self.sample_rate,
            source=source,
            min_seconds=MIN_SECONDS,
            max_seconds=self.max_seconds,
            long_policy="error",
        )

    def hidden_states(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Every hidden state of the backbone for one stretch of audio.

        Args:
            wave: ``[N]`` float32 at :attr:`sample_rate`.

        Returns:
            ``[L, T, D]`` float32.
        """
        return self.backbone(torch.as_tensor(wave, dtype=torch.float32))

    def features(self, wave: np.ndarray | torch.Tensor, moments: Moments | None = None
                 ) -> torch.Tensor:
        """The pipeline's frames of one stretch of audio, before frame pooling.

        Returns:
            ``[T, D]`` (or ``[L_sel, T, D]`` for a multi-layer head) in the pipeline's
            storage dtype.
        """
        return self.pipeline.frames(self.hidden_states(wave), moments)

    def probabilities(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B, C]`` from the head for a padded batch."""
        with torch.inference_mode():
            return torch.softmax(self.model(x, mask).float(), dim=-1)

    # ------------------------------------------------------------------ enrolment
    def new_profile(self, name: str = "") -> SpeakerProfile:
        """An empty speaker profile for this model (it normalises as no profile does)."""
        return new_profile(self.pipeline, _jsonable(self.backbone.identity()),
                           self.backbone.num_hidden_states, self.backbone.hidden_size, name=name)

    def enrol(
        self,
        clips: Iterable[str | Path | Any],
        sample_rate: int | None = None,
        *,
        profile: SpeakerProfile | None = None,
        name: str = "",
        skip_errors: bool = False,
        on_clip: Callable[[str, AudioError | None], None] | None = None,
    ) -> SpeakerProfile:
        """Build or extend a speaker profile from unlabelled clips of one speaker.

        Only audio enters: the profile holds the frame moments of the backbone's hidden
        states (float16-rounded, as the feature pipeline stores them), never a label.

        Args:
            clips: Audio files (paths) and/or waveforms (``[N]`` or ``[N, C]`` arrays at
                ``sample_rate``).
            sample_rate: Rate of the waveforms in Hz (needed only for arrays).
            profile: Extend this profile in place (it must belong to this model).
            name: Name of a new profile (for people).
            skip_errors: Skip clips whose audio is unusable (reported to ``on_clip``)
                instead of raising.
            on_clip: Called after each clip with its name and ``None`` (used) or the error
                (skipped).

        Returns:
            The profile (``profile`` itself when given).

        Raises:
            ProfileError: A model directory without a speaker prior, or a profile made for
                another model.
            AudioError: An unusable clip (unless ``skip_errors``).
        """
        from ptssnn.features.profile import ProfileError

        if self.speaker_prior is None:
            raise ProfileError(
                "this model directory has no speaker prior (speaker_prior.safetensors), so "
                "it cannot use speaker profiles; train it again with this ptssnn version"
            )
        if profile is None:
            profile = self.new_profile(name)
        else:
            self._check_profile(profile)
        for index, clip in enumerate(clips):
            source = str(clip) if isinstance(clip, str | Path) else f"<waveform {index}>"
            try:
                wave = self._clip_wave(clip, sample_rate, source)
            except AudioError as error:
                if not skip_errors:
                    raise
                if on_clip is not None:
                    on_clip(source, error)
                continue
            profile.update(self.clip_hidden_states(wave))
            if on_clip is not None:
                on_clip(source, None)
        return profile

    def clip_hidden_states(self, wave: np.ndarray) -> torch.Tensor:
        """Every hidden state of a whole clip, in the pipeline's storage dtype, ``[L, T, D]``.

        Clips longer than the analysis window are encoded in back-to-back windows (no
        overlap, so no frame counts twice in a profile).
        """
        windows = plan_windows(wave.size, self.sample_rate, self.window_s, self.window_s)
        parts = [self.pipeline.to_storage(self.hidden_states(wave[s:e])) for s, e in windows]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)

    def moments_for(self, profile: SpeakerProfile | None) -> Moments | None:
        """What the pipeline's normalisation gets for a speaker (``None``: no profile and a
        head that needs none); see :func:`ptssnn.features.enrolment.pipeline_moments`.

        Raises:
            ProfileError: A profile made for another model, or a model without a prior.
        """
        if profile is not None:
            self._check_profile(profile)
        return pipeline_moments(self.pipeline, self.speaker_prior, profile)

    def personalised_head(self, profile: SpeakerProfile | None) -> torch.nn.Module:
        """A copy of the head with a speaker's profile folded into its input standardisation,
        for exporting a head personalised to one enrolled speaker (``ptssnn export
        --profile``).

        The pipeline standardises a speaker's features by per-channel moments ``(m, s)``
        before the head standardises them by its own ``(μ, σ)``: the two affine maps make one,
        ``(x − (m + μ·s)) / (s·σ)``, which the copy holds as its ``(μ, σ)``. Fed the
        pipeline's features *without* moments, the copy computes what the head computes with
        the profile (up to the storage dtype's rounding, which the pipeline applies before
        the head's standardisation in one case and after it in the other).

        Raises:
            ProfileError: A profile made for another model, a model without a speaker prior,
                a layer selection that averages hidden states, or a head without input
                standardisation (nothing to fold into).
        """
        from ptssnn.features.profile import ProfileError

        moments = self.moments_for(profile)
        head = copy.deepcopy(self.model)
        if moments is None:
            return head
        selection = self.pipeline.selection
        if selection.mean:
            raise ProfileError(
                f"layer selection {self.pipeline.layers!r} averages hidden states after the "
                "speaker's standardisation: the profile cannot be folded into the head")
        config = getattr(head, "config", None)
        if config is None or not config.standardise_input:
            raise ProfileError("this head has no input standardisation to fold a profile into")
        index = list(selection.resolve(moments.mean.shape[0]))
        mean, std = moments.mean[index].to(head.input_mean), moments.std[index].to(head.input_std)
        with torch.no_grad():
            head.input_mean.copy_(mean + head.input_mean * std)
            head.input_std.copy_(std * head.input_std)
        return head

    def _check_profile(self, profile: SpeakerProfile) -> None:
        profile.check(_jsonable(self.backbone.identity()), self.pipeline.fingerprint())

    def _clip_wave(self, clip: Any, sample_rate: int | None, source: str) -> np.ndarray:
        if isinstance(clip, str | Path):
            from ptssnn.audio import load_audio

            return load_audio(clip, sample_rate=self.sample_rate, max_seconds=self.max_seconds,
                              min_seconds=MIN_SECONDS, long_policy="error")
        if sample_rate is None:
            raise ValueError("pass sample_rate to enrol waveforms (arrays)")
        return self.prepare_waveform(clip, sample_rate, source=source)

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        waveform: Any,
        sample_rate: int,
        *,
        source: str | None = None,
        profile: SpeakerProfile | None = None,
    ) -> Prediction:
        """Recognise the emotion in one recording.

        Args:
            waveform: ``[N]`` or ``[N, C]`` samples (numpy array, tensor or list).
            sample_rate: Rate of ``waveform`` in Hz (resampled if it differs from the
                backbone's).
            source: Optional name reported in the result.
            profile: The speaker's profile (see :meth:`enrol`); ``None``: global moments.

        Returns:
            The overall label and probabilities, one entry per analysis window, timings.
        """
        start = time.perf_counter()
        moments = self.moments_for(profile)
        wave = self.prepare_waveform(waveform, sample_rate, source=source or "<waveform>")
        windows = plan_windows(wave.size, self.sample_rate, self.window_s, self.hop_s)
        backbone_s = 0.0
        features = []
        for s, e in windows:
            t0 = time.perf_counter()
            features.append(self.pipeline.prepare(self.hidden_states(wave[s:e]), moments))
            backbone_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        x, mask = self.pipeline.collate(features)
        probs = self.probabilities(x, mask)
        head_s = time.perf_counter() - t0
        # Duration-weighted mean: overlapping windows of equal length weigh the same, a
        # lone short recording is its own single window.
        weights = torch.tensor([e - s for s, e in windows], dtype=torch.float32)
        overall = (probs * weights[:, None]).sum(0) / weights.sum()
        segments = tuple(
            SegmentPrediction(
                start_s=s / self.sample_rate,
                end_s=e / self.sample_rate,
                label=self.labels[int(p.argmax())],
                probabilities=self._named(p),
            )
            for (s, e), p in zip(windows, probs, strict=True)
        )
        total_s = time.perf_counter() - start
        return Prediction(
            label=self.labels[int(overall.argmax())],
            probabilities=self._named(overall),
            duration_s=wave.size / self.sample_rate,
            timings=Timings(
                backbone_ms=backbone_s * 1000,
                head_ms=head_s * 1000,
                total_ms=total_s * 1000,
                audio_seconds=wave.size / self.sample_rate,
            ),
            segments=segments,
            source=source,
        )

    def predict_file(self, path: str | Path, *, profile: SpeakerProfile | None = None
                     ) -> Prediction:
        """Decode an audio file (any format libsndfile reads, any rate) and recognise it
        (with the speaker's ``profile``, if given).

        Raises:
            AudioError: The file is missing, unreadable, silent, too short or too long.
        """
        from ptssnn.audio import load_audio

        path = Path(path)
        wave = load_audio(
            path,
            sample_rate=self.sample_rate,
            max_seconds=self.max_seconds,
            min_seconds=MIN_SECONDS,
            long_policy="error",
        )
        return self.predict(wave, self.sample_rate, source=str(path), profile=profile)

    def stream(
        self,
        *,
        chunk_s: float = 0.5,
        left_context_s: float = 2.0,
        lookahead_s: float = 0.0,
        profile: SpeakerProfile | None = None,
        update_profile: bool = False,
    ) -> StreamingSession:
        """Start a streaming session (see :class:`ptssnn.inference.streaming.StreamingSession`).

        Args:
            chunk_s: Audio per update (seconds); a multiple of one frame (20 ms).
            left_context_s: Audio before each chunk that the backbone sees again, so chunk
                edges get (almost) the features of an offline pass.
            lookahead_s: Audio after each chunk the backbone sees before the chunk is
                emitted (adds that much latency; brings a bidirectional encoder's chunk-edge
                features closer to offline).
            profile: Normalise the stream with this speaker's profile.
            update_profile: Add the stream's audio to ``profile`` as one more clip when the
                stream is flushed (opt-in; the normalisation of this stream stays fixed).
        """
        from ptssnn.inference.streaming import StreamingSession

        return StreamingSession(
            self, chunk_s=chunk_s, left_context_s=left_context_s, lookahead_s=lookahead_s,
            profile=profile, update_profile=update_profile,
        )

    def _named(self, probs: torch.Tensor) -> dict[str, float]:
        return {label: float(p) for label, p in zip(self.labels, probs.tolist(), strict=True)}


def _num_classes(model: torch.nn.Module) -> int | None:
    config = getattr(model, "config", None)
    value = getattr(config, "num_classes", None)
    return int(value) if value is not None else None


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so that tuples/lists and int/str keys compare like the card."""
    import json

    return json.loads(strict_json(value, sort_keys=True, default=str))
