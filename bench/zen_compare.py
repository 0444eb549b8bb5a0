"""GoRules ZEN beside fenliu: the same complaints, the same decisions, first checked then timed.

ZEN is driven the way the issue asks: ``ZenEngine({"loader": ...}).evaluate(key, input, options)``,
with the loader returning a pre-compiled ``ZenDecisionContent`` (not ``create_decision().evaluate``,
which builds a new runtime per call).

Both sides start from the same validated :class:`~fenliu.domain.model.Complaint`. fenliu's timed work is
``decider.decide(c).to_dict(trace=...)``; ZEN's is ``zen_input(c)`` (joining and normalizing the text and
hint, as fenliu does inside ``decide``) and ``engine.evaluate``. fenliu does more per decision (a
decision id, absolute deadlines, the citizen guidance, a rule-level trace with matched keywords); ZEN's
trace is its own node-level trace (each node's input, output and time).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import zen

from fenliu import Complaint, Decider, Outcome
from fenliu.domain.fields import DEADLINE_SLOTS
from fenliu.domain.model import DECIDED_FIELDS, DERIVED_FIELDS

GRAPH = Path(__file__).resolve().parent / "zen" / "wushen.json"
KEY = "wushen.json"

#: The decision fields compared on every complaint (deadlines as durations in hours).
COMPARED = DECIDED_FIELDS

_INPUT_FIELDS = (
    "procedure",
    "new_facts",
    "existing_case_id",
    "intent",
    "crime_involved",
    "people_involved",
    "extreme_risk",
    "repeat_visits",
    "escalation_intent",
    "public_opinion",
    "amount_yuan",
    "sensitive_period",
    "conflict_verbal",
    "vulnerable",
    "received_tier",
    "cross_township",
    "cross_village",
    "last_outcome",
    "last_stage",
)
#: Each deadline of the decision, and the graph's output for it in hours (first_contact_within ->
#: first_contact_h), read from the field table.
_DEADLINES = tuple((slot, within.removesuffix("_within") + "_h") for within, slot in DEADLINE_SLOTS.items())


def zen_engine(graph: Path = GRAPH) -> zen.ZenEngine:
    content = zen.ZenDecisionContent(graph.read_text(encoding="utf-8"))

    def loader(key: str) -> zen.ZenDecisionContent:
        return content

    return zen.ZenEngine({"loader": loader})


def _norm(s: str) -> str:
    return unicodedata.normalize("NFKC", s).casefold()


def zen_input(c: Complaint) -> dict[str, Any]:
    """The graph's input for a complaint: its fields, and the text and hint normalized."""
    d: dict[str, Any] = {f: getattr(c, f) for f in _INPUT_FIELDS}
    d["text"] = _norm(c.title + "\n" + c.text) if (c.title or c.text) else ""
    for f in DERIVED_FIELDS:  # the text step's fields (``Decider.enrichment``), as rules see them
        d[f] = getattr(c, f)
    d["hint"] = _norm(c.category_hint.strip())
    return d


def zen_evaluate(engine: zen.ZenEngine, c: Complaint, trace: bool = False) -> dict[str, Any]:
    return engine.evaluate(KEY, zen_input(c), {"trace": trace})


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, (list, tuple)) else v


def from_zen(result: dict[str, Any]) -> dict[str, Any]:
    """The compared fields of a ZEN result, read by name (the graph spells "none" as NONE or null)."""
    r = result["result"]
    out = {name: _plain(r[name]) for name in COMPARED if name != "deadlines"}
    out["excluded"] = bool(out["excluded"])
    out["approach"] = "" if out["approach"] == "NONE" else out["approach"]
    out["statutory_route"] = out["statutory_route"] or ""
    out["deadlines"] = {name: int(r[key]) for name, key in _DEADLINES if r.get(key) is not None}
    return out


def from_outcome(o: Outcome) -> dict[str, Any]:
    """The compared fields of a fenliu outcome, read by name."""
    out = {name: _plain(getattr(o, name)) for name in COMPARED if name != "deadlines"}
    out["deadlines"] = dict(o.within)
    return out


def compare(
    complaints: Iterable[Complaint], decider: Decider, engine: zen.ZenEngine
) -> tuple[int, list[dict[str, Any]]]:
    """(complaints compared, differences). A difference names the complaint, the field and both values."""
    n = 0
    diffs: list[dict[str, Any]] = []
    for c in complaints:
        n += 1
        c = decider.enrichment(c)  # the text step, before either engine
        ours = from_outcome(decider.outcome(c))
        theirs = from_zen(zen_evaluate(engine, c))
        for f in COMPARED:
            if ours[f] != theirs[f]:
                diffs.append({"complaint": c.id, "field": f, "fenliu": ours[f], "zen": theirs[f]})
    return n, diffs


def render_diffs(diffs: list[dict[str, Any]], limit: int = 10) -> str:
    return "\n".join(json.dumps(d, ensure_ascii=False) for d in diffs[:limit])
