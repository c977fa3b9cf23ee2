"""The build list of fastgate/build.py and what `fastgate version` reports from it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import fastgate
from fastgate.build import COMPILED_MODULES, compiled_modules, describe

PACKAGE = Path(fastgate.__file__).parent


def test_every_listed_module_has_its_python_source() -> None:
    # the sources are the fallback: each compiled module must still import without its extension
    for name in COMPILED_MODULES:
        assert (PACKAGE.joinpath(*name.split(".")[1:]).with_suffix(".py")).is_file(), name
    assert len(set(COMPILED_MODULES)) == len(COMPILED_MODULES)


def test_the_build_is_all_compiled_or_all_pure() -> None:
    # setup.py builds every extension or none: a half-built install would mix both
    assert len(compiled_modules()) in (0, len(COMPILED_MODULES))


def test_describe_counts_the_modules_loaded_from_extensions() -> None:
    loaded = [
        name for name in COMPILED_MODULES if not str(importlib.import_module(name).__file__).endswith(".py")
    ]
    expected = f"compiled: mypyc, {len(loaded)} modules" if loaded else "pure Python"
    assert describe() == expected


def test_limit_results_stay_frozen_and_hashable_in_either_build():
    # mypyc drops class keyword arguments of the classes in a compiled module: the Structs that
    # must be frozen live in an interpreted module (fastgate.store.decisions).
    from fastgate.store.limits import QuotaDecision, RateDecision, RateParams

    params = RateParams(10, 100_000, 900_000)
    assert hash(params) == hash(RateParams(10, 100_000, 900_000))
    for cls in (RateParams, RateDecision, QuotaDecision):
        assert cls.__struct_config__.frozen, cls
    with pytest.raises(AttributeError):
        params.limit = 11  # type: ignore[misc]
