"""fenliu (分流): rule-driven routing and triage of citizen complaints, petitions and disputes.

Data flows one way: YAML pack → load (keeping file:line) → validate → compile → prepared engine →
decide(complaint) → decision + trace → transport (gRPC / CLI). The sub-packages follow it:
``domain`` (the vocabulary), ``packs`` (loading and checking), ``compiling``, ``engine`` (decider,
resolution, memo, matchers, enrichment), ``authoring`` (cases, lint, diff, scoring), ``serving``
(config, runtime, reload, supervisor, gRPC, observability) and ``cli``.

The names below are the public API; they are imported when first used, so ``import fenliu`` stays
cheap::

    from fenliu import Decider, complaint_from_dict, load_pack

    decider = Decider(load_pack("rules/wushen"))
    decision = decider.decide(complaint_from_dict({"id": "1", "text": "拖欠工资"}))

A rule author's checks are public too: ``compile_pack`` (what ``Decider`` does first), ``lint`` (the
findings of ``fenliu lint``) and ``run_cases`` (the pack's own test cases, as ``fenliu test``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "Complaint": "fenliu.domain.model",
    "Decision": "fenliu.domain.model",
    "Outcome": "fenliu.domain.model",
    "complaint_from_dict": "fenliu.domain.model",
    "DECISION_TABLE": "fenliu.domain.fields",
    "FenliuError": "fenliu.domain.errors",
    "ComplaintError": "fenliu.domain.errors",
    "PackError": "fenliu.domain.errors",
    "Problem": "fenliu.domain.errors",
    "Pack": "fenliu.packs.load",
    "load_pack": "fenliu.packs.load",
    "CompiledPack": "fenliu.compiling.compiler",
    "compile_pack": "fenliu.compiling.compiler",
    "Decider": "fenliu.engine.decider",
    "Matcher": "fenliu.engine.matchers",
    "Enricher": "fenliu.engine.enrich",
    "Store": "fenliu.engine.enrich",
    "MemoryStore": "fenliu.engine.enrich",
    "run_cases": "fenliu.authoring.cases",
    "lint": "fenliu.authoring.lint",
    "ServeConfig": "fenliu.serving.config",
    "Triage": "fenliu.serving.runtime",
}

__all__ = [
    "DECISION_TABLE",
    "CompiledPack",
    "Complaint",
    "ComplaintError",
    "Decider",
    "Decision",
    "Enricher",
    "FenliuError",
    "Matcher",
    "MemoryStore",
    "Outcome",
    "Pack",
    "PackError",
    "Problem",
    "ServeConfig",
    "Store",
    "Triage",
    "__version__",
    "compile_pack",
    "complaint_from_dict",
    "lint",
    "load_pack",
    "run_cases",
]

if TYPE_CHECKING:
    from fenliu.authoring.cases import run_cases
    from fenliu.authoring.lint import lint
    from fenliu.compiling.compiler import CompiledPack, compile_pack
    from fenliu.domain.errors import ComplaintError, FenliuError, PackError, Problem
    from fenliu.domain.fields import DECISION_TABLE
    from fenliu.domain.model import Complaint, Decision, Outcome, complaint_from_dict
    from fenliu.engine.decider import Decider
    from fenliu.engine.enrich import Enricher, MemoryStore, Store
    from fenliu.engine.matchers import Matcher
    from fenliu.packs.load import load_pack
    from fenliu.packs.types import Pack
    from fenliu.serving.config import ServeConfig
    from fenliu.serving.runtime import Triage


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fenliu' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
