"""Every registered detector passes the generic checks (River's manner: one parametrized test)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import opsradar.detectors
from opsradar.detectors.base import DETECTORS, Detector
from opsradar.detectors.checks import check_detector, yield_checks

# Import every module of the package so that every detector class is registered.
for _info in pkgutil.iter_modules(opsradar.detectors.__path__, "opsradar.detectors."):
    importlib.import_module(_info.name)

CASES = [(cls, check) for _, cls in sorted(DETECTORS.items()) for check in yield_checks(cls)]


@pytest.mark.parametrize(("cls", "check"), CASES, ids=[f"{c.name}-{k.__name__}" for c, k in CASES])
def test_detector_passes_generic_check(cls: type[Detector], check: object) -> None:
    check(lambda: cls(**cls._unit_test_params()))  # type: ignore[operator]


def test_the_registry_holds_the_online_detectors() -> None:
    assert {"robust_z", "quantile_band", "contextual", "residual_metric"} <= set(DETECTORS)


class Impure(Detector):
    """Not registered: a detector whose score_one changes its state."""

    name = "impure"

    def __init__(self) -> None:
        self.n = 0

    def learn_one(self, x: dict[str, float]) -> None:
        return None

    def score_one(self, x: dict[str, float]) -> float:
        self.n += 1
        return float(self.n)


def test_check_detector_catches_an_impure_detector() -> None:
    with pytest.raises(AssertionError, match="scoring twice"):
        check_detector(Impure)
