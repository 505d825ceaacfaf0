"""Every test has exactly one tier (unit, dagster, e2e): the guard in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MODULE_TIERS, TIERS, assign_tier

TESTS = Path(__file__).resolve().parent


class _Item:
    """The part of a pytest item the guard reads: its module, markers and node id."""

    def __init__(self, module: str, *markers: str) -> None:
        self.fspath = TESTS / f"{module}.py"
        self.nodeid = f"tests/{module}.py::test_x"
        self.markers = [pytest.Mark(name, (), {}) for name in markers]

    def iter_markers(self):
        return iter(self.markers)

    def add_marker(self, name: str) -> None:
        self.markers.append(pytest.Mark(name, (), {}))


def test_every_test_module_has_a_tier_and_no_tier_names_a_missing_module():
    on_disk = {p.stem for p in TESTS.glob("test_*.py")}
    assert on_disk == set(MODULE_TIERS), (on_disk ^ set(MODULE_TIERS))
    assert set(MODULE_TIERS.values()) <= set(TIERS)


def test_a_test_gets_its_modules_tier_unless_it_has_its_own():
    plain = _Item("test_sensor", "parametrize")
    assert assign_tier(plain) == "dagster"
    assert [m.name for m in plain.markers] == ["parametrize", "dagster"]
    own = _Item("test_sensor", "e2e")
    assert assign_tier(own) == "e2e" and [m.name for m in own.markers] == ["e2e"]


def test_no_tier_or_two_tiers_fail_collection_naming_the_test():
    with pytest.raises(pytest.UsageError, match="test_new.py::test_x: no test tier"):
        assign_tier(_Item("test_new"))
    with pytest.raises(pytest.UsageError, match=r"more than one test tier: \['e2e', 'unit'\]"):
        assign_tier(_Item("test_sensor", "unit", "e2e"))
