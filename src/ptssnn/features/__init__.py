"""The feature cache and the feature pipeline.

``extract_features(utterances, backbone, layers, store) -> FeatureSet``;
``FeatureSet.get(utt_id) -> [L_sel, T, D]`` float16 memory map. See :mod:`.store` for the
on-disk layout and the cache key. :class:`FeaturePipeline` (:mod:`.pipeline`) turns hidden
states into head input, the same way in training and deployment.
"""

from __future__ import annotations

from ptssnn.features.distributed import ProcessGroup
from ptssnn.features.extraction import AudioPolicy, extract_features
from ptssnn.features.feature_set import ExtractionFailure, ExtractionReport, FeatureSet
from ptssnn.features.layers import LayerSelection, LayerSelectionError, middle_layer
from ptssnn.features.pipeline import (
    FeaturePipeline,
    FeaturePipelineError,
    Moments,
    pad_items,
    standardise,
)
from ptssnn.features.store import (
    CACHE_ENV,
    Entry,
    FeatureCacheError,
    FeatureStore,
    Namespace,
    default_cache_dir,
    file_sha256,
)

__all__ = [
    "CACHE_ENV",
    "AudioPolicy",
    "Entry",
    "ExtractionFailure",
    "ExtractionReport",
    "FeatureCacheError",
    "FeaturePipeline",
    "FeaturePipelineError",
    "FeatureSet",
    "FeatureStore",
    "LayerSelection",
    "LayerSelectionError",
    "Moments",
    "Namespace",
    "ProcessGroup",
    "default_cache_dir",
    "extract_features",
    "file_sha256",
    "middle_layer",
    "pad_items",
    "standardise",
]
