"""Online anomaly detection: features per stream, River-style detectors, calibration, the engine.

The public API:

- :class:`~opsradar.detectors.engine.DetectionEngine` (``process(event) -> list[Anomaly]``,
  ``stream_key``, ``snapshot``/``restore``, ``on_drift``) and :func:`~opsradar.detectors.engine.shard_of`;
- the detector contract :class:`~opsradar.detectors.base.Detector` and the registry
  :data:`~opsradar.detectors.base.DETECTORS` (``register`` adds a class);
- :func:`~opsradar.detectors.checks.check_detector`, the generic checks every detector passes.
"""

from __future__ import annotations

from .base import DETECTORS, Detector, register
from .checks import check_detector
from .contextual import ContextualDetector
from .engine import DetectionEngine, shard_of
from .likelihood import AnomalyLikelihood
from .robust import QuantileBand, RobustZScore

__all__ = [
    "DETECTORS",
    "AnomalyLikelihood",
    "ContextualDetector",
    "DetectionEngine",
    "Detector",
    "QuantileBand",
    "RobustZScore",
    "check_detector",
    "register",
    "shard_of",
]
