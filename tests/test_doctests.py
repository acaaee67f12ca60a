"""Runs every docstring example in the installed package, as River does with --doctest-modules.

The modules are imported by their installed names (``opsradar.detectors.x``), never by folder."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import opsradar

SKIP_PREFIXES = ("opsradar.migrations",)


def _modules() -> list[str]:
    names = ["opsradar"]
    for info in pkgutil.walk_packages(opsradar.__path__, "opsradar."):
        if not info.name.startswith(SKIP_PREFIXES):
            names.append(info.name)
    for sub in ("collectors", "detectors", "alerting", "serving"):
        pkg = importlib.import_module(f"opsradar.{sub}")
        names.append(pkg.__name__)
        names += [i.name for i in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}.")]
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
