"""The public API: what ``fenliu`` exports, and that each name is the object its module defines."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import fenliu

EXPECTED = {
    "__version__",
    "Complaint",
    "Decision",
    "Outcome",
    "complaint_from_dict",
    "DECISION_TABLE",
    "FenliuError",
    "ComplaintError",
    "PackError",
    "Problem",
    "Pack",
    "load_pack",
    "CompiledPack",
    "compile_pack",
    "Decider",
    "Matcher",
    "Enricher",
    "Store",
    "MemoryStore",
    "run_cases",
    "lint",
    "ServeConfig",
    "Triage",
}


def test_public_api_exports_exactly_these_names() -> None:
    assert set(fenliu.__all__) == EXPECTED
    assert len(fenliu.__all__) == len(EXPECTED)
    assert set(fenliu._EXPORTS) == EXPECTED - {"__version__"}


@pytest.mark.parametrize("name", sorted(EXPECTED - {"__version__"}))
def test_public_api_name_is_its_modules_object(name: str) -> None:
    module = importlib.import_module(fenliu._EXPORTS[name])
    assert getattr(fenliu, name) is getattr(module, name)


def test_public_api_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'decide'"):
        fenliu.decide  # noqa: B018


def test_public_api_import_is_cheap() -> None:
    code = "import sys, fenliu; print(any(m.startswith('fenliu.engine') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_api_decides_a_complaint() -> None:
    from conftest import WUSHEN

    decider = fenliu.Decider(fenliu.load_pack(WUSHEN), backend="python")
    decision = decider.decide(fenliu.complaint_from_dict({"id": "1", "text": "老板拖欠我三个月工资"}))
    assert isinstance(decision, fenliu.Decision)
    assert decision.outcome.category != ""


def test_public_api_lints_a_pack() -> None:
    from conftest import WUSHEN

    pack = fenliu.load_pack(WUSHEN)
    compiled = fenliu.compile_pack(pack)
    assert isinstance(compiled, fenliu.CompiledPack)
    assert [f for f in fenliu.lint(pack, compiled) if f.severity == "error"] == []
