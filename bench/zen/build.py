"""Build ``bench/zen/wushen.json``: the reference pack as a GoRules ZEN decision graph (JDM).

The graph is written by hand, node by node, to say what the Wushen pack says in ZEN's own terms:
decision tables with the "first" hit policy where the pack resolves by priority (and for colour, where
the highest colour wins: the rows are ordered RED, YELLOW, BLUE), and expression nodes where a field is
computed. Only the *data* comes from the pack: the classify keywords and priorities (a pack that still
classifies by keyword rules), and the categories and deadlines tables. The reference pack classifies by
the text step's fields (``text_category``/``text_confident``, ``model_category``/``model_confident``, ``model_agrees``),
which fenliu's enrichment computes before either engine runs, as it normalizes the text for both. The logic is not derived from fenliu's compiler; that is what makes the
corpus check (``bench/zen_compare.py``) a real check of two implementations.

Not rendered: the ``explain`` stage and the guidance texts (words for the citizen, not a decision), the
trace of which rule fired (ZEN records its own node trace instead).

Input (one flat object, see ``zen_compare.zen_input``): every complaint field the pack reads, plus
``text`` (title and text joined, NFKC-normalized and case-folded, as fenliu does) and ``hint`` (the
category hint, stripped, normalized the same way). Output: the input plus ``category``, ``excluded``,
``exclusion``, ``referred_to``, ``color``, ``tier``, ``approach``, ``owner_department``,
``co_departments``, ``stage``, ``path``, ``statutory_route`` and the deadlines in hours
(``first_contact_h``, ``plan_h``, ``accept_h``, ``resolve_h``; null when there is none).

Run ``python -m bench.zen.build`` after changing the pack; the smoke test fails when the committed
graph is stale.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "service") not in sys.path:
    sys.path.insert(0, str(ROOT / "service"))

from fenliu.domain import fields as F  # noqa: E402
from fenliu.packs.load import load_pack  # noqa: E402
from fenliu.packs.types import Keywords, Pack, iter_tests  # noqa: E402

GRAPH = Path(__file__).with_name("wushen.json")
STAGES = ("CONSULT", "ASSESS", "MEDIATE", "ARBITRATE", "LITIGATE")
ARBITRATION_FIRST_ROUTE = (
    "劳动人事争议须先经仲裁，对仲裁裁决不服的方可向人民法院起诉（劳动争议调解仲裁法第五条）"
)
# The categories whose intent to sue is given that route; the other arbitration-first ones (wage_arrears,
# land_rights, grassland) keep their own statutory route from the categories table.
LABOUR_ARBITRATION = ("labor_dispute", "personnel_dispute")
# legal_aid: the decision on aid is due within 7 days (法律援助法 §43): plan_by at most 168 hours.
LEGAL_AID_PLAN_H = 7 * 24
# route.diverted: categories that need a department's authority.
AUTHORITY = (
    "land_expropriation",
    "land_rights",
    "labor_dispute",
    "personnel_dispute",
    "social_insurance",
    "social_assistance",
    "veterans",
    "education",
    "enterprise_community",
    "wage_arrears",
)


def _norm(s: str) -> str:
    return unicodedata.normalize("NFKC", s).casefold()


def _s(v: str) -> str:
    """A ZEN string literal."""
    return json.dumps(v, ensure_ascii=False)


def _lit(v: Any) -> str:
    """A ZEN literal for a Python value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return _s(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    raise TypeError(type(v).__name__)


class Graph:
    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = [
            {"id": "request", "type": "inputNode", "name": "request", "position": {"x": 0, "y": 0}}
        ]
        self.last = "request"
        self.edges: list[dict[str, Any]] = []

    def _chain(self, node: dict[str, Any]) -> None:
        node["position"] = {"x": 260 * len(self.nodes), "y": 0}
        self.nodes.append(node)
        self.edges.append(
            {
                "id": f"{self.last}->{node['id']}",
                "sourceId": self.last,
                "targetId": node["id"],
                "type": "edge",
            }
        )
        self.last = node["id"]

    def table(
        self, name: str, inputs: list[str], outputs: list[str], rows: list[tuple[list[str], list[str]]]
    ) -> None:
        """A first-hit decision table. ``rows``: (input cells, output expressions); "" matches anything."""
        ins = [{"id": f"in{i}", "name": f, "field": f} for i, f in enumerate(inputs)]
        outs = [{"id": f"out{i}", "name": f, "field": f} for i, f in enumerate(outputs)]
        rules = []
        for n, (cells, values) in enumerate(rows):
            assert len(cells) == len(inputs) and len(values) == len(outputs), name
            rule: dict[str, str] = {"_id": f"{name}-{n}"}
            rule.update({f"in{i}": c for i, c in enumerate(cells)})
            rule.update({f"out{i}": v for i, v in enumerate(values)})
            rules.append(rule)
        self._chain(
            {
                "id": name,
                "type": "decisionTableNode",
                "name": name,
                "content": {
                    "hitPolicy": "first",
                    "passThrough": True,
                    "inputField": None,
                    "outputPath": None,
                    "executionMode": "single",
                    "inputs": ins,
                    "outputs": outs,
                    "rules": rules,
                },
            }
        )

    def expressions(self, name: str, exprs: list[tuple[str, str]]) -> None:
        """An expression node; later expressions see earlier ones as ``$.key``."""
        self._chain(
            {
                "id": name,
                "type": "expressionNode",
                "name": name,
                "content": {
                    "passThrough": True,
                    "inputField": None,
                    "outputPath": None,
                    "executionMode": "single",
                    "expressions": [{"id": f"{name}-{k}", "key": k, "value": v} for k, v in exprs],
                },
            }
        )

    def finish(self) -> dict[str, Any]:
        self._chain({"id": "response", "type": "outputNode", "name": "response"})
        return {"contentType": "application/vnd.gorules.decision", "nodes": self.nodes, "edges": self.edges}


def _hours(v: Any) -> str:
    h = F.parse_duration(v)
    return "null" if h is None else str(h)


def build(pack: Pack) -> dict[str, Any]:
    cats = pack.categories
    g = Graph()

    # classify: a valid hint decides (code or Chinese name, normalized); otherwise keywords by priority.
    hint_rows: list[tuple[list[str], list[str]]] = []
    for code, row in cats.items():
        if code == "unclassified":  # only the 22 categories are hints (contract v2)
            continue
        names = dict.fromkeys([_norm(code), _norm(str(row.get("name", code)))])
        hint_rows.append(([", ".join(_s(n) for n in names)], [_s(code)]))
    hint_rows.append(([""], ['""']))
    g.table("hint", ["hint"], ["hint_code"], hint_rows)

    keyword_rules = sorted(
        (
            r
            for r in pack.rules
            if r.stage == "classify" and any(isinstance(x, Keywords) for x in iter_tests(r.when))
        ),
        key=lambda r: (-r.priority, r.order),
    )
    # Then the text step's fields (computed by fenliu's enrichment before either engine, as the text
    # is normalized before both): the lexicon's category when the model names the same one (at any
    # confidence), else the model's when it is confident, else the lexicon's when it is.
    rows: list[tuple[list[str], list[str]]] = [
        (['$ != ""', "", "", "", ""], ["hint_code"]),
        (["", "$ == true", "", "", ""], ["text_category"]),
        (["", "", "", "$ == true", ""], ["model_category"]),
        (["", "", "$ == true", "$ == false", ""], ["text_category"]),
    ]
    for r in keyword_rules:
        words = [w for leaf in iter_tests(r.when) if isinstance(leaf, Keywords) for w in leaf.words]
        cell = " or ".join(f"contains($, {_s(_norm(w))})" for w in words)
        rows.append((["", "", "", "", cell], [_s(str(r.then["category"].literal))]))
    rows.append((["", "", "", "", ""], ['"unclassified"']))
    g.table(
        "classify",
        ["hint_code", "model_agrees", "text_confident", "model_confident", "text"],
        ["category"],
        rows,
    )
    # The text is read only to classify: drop it, so that later nodes (and their trace) do not carry it.
    g.expressions(
        "drop_text",
        [("text", "null"), ("hint", "null"), ("text_category", "null"), ("model_category", "null")],
    )

    # The category's row of the categories table, once.
    cat_out = [
        "cat_owner",
        "cat_co_joint",
        "cat_entry",
        "cat_arbitrable",
        "cat_arbitration_first",
        "cat_route",
    ]
    cat_rows = []
    for code, row in cats.items():
        co_joint = list(dict.fromkeys([*row.get("co_departments", []), "governance_center"]))
        cat_rows.append(
            (
                [_s(code)],
                [
                    _s(row["owner"]),
                    _lit(co_joint),
                    _s(row["entry_stage"]),
                    _lit(bool(row.get("arbitrable"))),
                    _lit(bool(row.get("arbitration_first"))),
                    _s(row.get("statutory_route") or ""),
                ],
            )
        )
    g.table("category_row", ["category"], cat_out, cat_rows)

    # exclude: the first in the contract's order wins.
    x_in = ["procedure", "new_facts", "existing_case_id", "intent", "crime_involved"]
    x_rows = [
        (['"LITIGATION_PENDING", "JUDGMENT_EFFECTIVE"', "", "", "", ""], ["true", '"judicial"', '"court"']),
        (['"ARBITRATION_PENDING"', "", "", "", ""], ["true", '"judicial"', '"arbitration_commission"']),
        (['"ADMIN_REVIEW_PENDING"', "", "", "", ""], ["true", '"judicial"', '"justice"']),
        (['"REVIEW_TERMINATED"', "false", "", "", ""], ["true", '"terminated"', '"petition_bureau"']),
        (["", "", '$ != ""', "", ""], ["true", '"duplicate"', "cat_owner"]),
        (["", "", "", '"REPORT"', ""], ["true", '"misconduct_or_crime"', '"discipline_inspection"']),
        (["", "", "", "", "true"], ["true", '"misconduct_or_crime"', '"public_security"']),
        (["", "", "", "", ""], ["false", '""', '""']),
    ]
    g.table("exclude", x_in, ["excluded", "exclusion", "referred_to"], x_rows)

    # grade: rows ordered RED, YELLOW, BLUE, so the first hit is the highest colour.
    gr_in = [
        "people_involved",
        "extreme_risk",
        "repeat_visits",
        "escalation_intent",
        "public_opinion",
        "amount_yuan",
        "category",
        "sensitive_period",
        "conflict_verbal",
    ]

    def grow(color: str, **cells: str) -> tuple[list[str], list[str]]:
        return [cells.get(f, "") for f in gr_in], [_s(color)]

    g.table(
        "grade",
        gr_in,
        ["color"],
        [
            grow("RED", people_involved=">= 30"),
            grow("RED", extreme_risk="true"),
            grow("RED", repeat_visits=">= 3"),
            grow("RED", escalation_intent="true"),
            grow("RED", public_opinion='"VIRAL"'),
            grow("RED", amount_yuan=">= 1000000"),
            grow("RED", category='"wage_arrears"', people_involved=">= 10"),
            grow("RED", sensitive_period="true", people_involved=">= 5"),
            grow("YELLOW", people_involved="[3..29]"),
            grow("YELLOW", repeat_visits="[1..2]"),
            grow("YELLOW", amount_yuan=">= 100000"),
            grow("YELLOW", public_opinion='"LOCAL"'),
            grow("YELLOW", conflict_verbal="true"),
            grow("BLUE"),
        ],
    )

    # uplift: a vulnerable complainant goes up one colour.
    g.expressions(
        "uplift",
        [
            ("color", 'vulnerable ? (color == "BLUE" ? "YELLOW" : "RED") : color'),
        ],
    )

    # route (三分吸附法).
    joint = '(color == "RED" or cross_township)'
    g.expressions(
        "route",
        [
            ("owner_department", "excluded ? referred_to : cat_owner"),
            ("co_departments", f"excluded ? [] : ({joint} ? cat_co_joint : [])"),
            ("statutory_route", 'excluded ? "" : cat_route'),
        ],
    )
    authority = ", ".join(_s(c) for c in AUTHORITY)
    r_in = ["excluded", "received_tier", "color", "cross_township", "category", "cross_village"]

    def rrow(out: str, **cells: str) -> tuple[list[str], list[str]]:
        return [cells.get(f, "") for f in r_in], [out]

    g.table(
        "tier",
        r_in,
        ["tier"],
        [
            rrow("received_tier", excluded="true", received_tier='$ != "UNSPECIFIED" and $ != ""'),
            rrow('"BANNER"', color='"RED"'),
            rrow('"BANNER"', cross_township="true"),
            rrow('"BANNER"', category='"unclassified"'),
            rrow('"TOWNSHIP"', color='"YELLOW"'),
            rrow('"TOWNSHIP"', cross_village="true"),
            rrow('"TOWNSHIP"', category=authority),
            rrow('"VILLAGE"'),
        ],
    )
    g.table(
        "approach",
        r_in,
        ["approach"],
        [
            rrow('"NONE"', excluded="true"),
            rrow('"JOINT"', color='"RED"'),
            rrow('"JOINT"', cross_township="true"),
            rrow('"DIVERTED"', category='"unclassified"'),
            rrow('"DIVERTED"', color='"YELLOW"'),
            rrow('"DIVERTED"', cross_village="true"),
            rrow('"DIVERTED"', category=authority),
            rrow('"IMMEDIATE"'),
        ],
    )

    # funnel: the category's entry stage, moved by the citizen's intent.
    f_in = ["excluded", "intent", "cat_entry", "cat_arbitration_first"]
    g.table(
        "funnel",
        f_in,
        ["stage"],
        [
            (["true", "", "", ""], ['"CONSULT"']),
            (["", '"CONSULTATION", "LEGAL_AID"', "", ""], ['"CONSULT"']),
            (["", '"MEDIATION"', '"CONSULT", "ASSESS", "MEDIATE"', ""], ['"MEDIATE"']),
            (["", '"LITIGATION"', "", "false"], ['"LITIGATE"']),
            (["", '"LITIGATION"', "", "true"], ['"ARBITRATE"']),
            (["", "", "", ""], ["cat_entry"]),
        ],
    )
    g.expressions(
        "funnel_route",
        [
            (
                "statutory_route",
                f'excluded == false and intent == "LITIGATION" and category in [{", ".join(_s(c) for c in LABOUR_ARBITRATION)}]'
                f" ? {_s(ARBITRATION_FIRST_ROUTE)} : statutory_route",
            ),
        ],
    )

    # retriage: one stage on after a failed or refused stage, unless the funnel already put it later.
    t_in = ["excluded", "last_outcome", "last_stage", "cat_arbitrable", "stage"]
    failed = '"FAILED", "REFUSED"'
    before_litigate = '"CONSULT", "ASSESS", "MEDIATE", "ARBITRATE"'
    g.table(
        "retriage",
        t_in,
        ["stage"],
        [
            (["false", failed, '"CONSULT"', "", '"CONSULT"'], ['"ASSESS"']),
            (["false", failed, '"ASSESS"', "", '"CONSULT", "ASSESS"'], ['"MEDIATE"']),
            (["false", failed, '"MEDIATE"', "true", '"CONSULT", "ASSESS", "MEDIATE"'], ['"ARBITRATE"']),
            (["false", failed, '"MEDIATE"', "false", before_litigate], ['"LITIGATE"']),
            (["false", failed, '"ARBITRATE"', "", before_litigate], ['"LITIGATE"']),
            (["false", failed, '"LITIGATE"', "", before_litigate], ['"LITIGATE"']),
            (["", "", "", "", ""], ["stage"]),
        ],
    )

    # deadlines (hours), by colour; an excluded complaint has only the first contact.
    d_rows = []
    for color, row in pack.tables["deadlines"].rows.items():
        d_rows.append(
            (
                [_s(color)],
                [_hours(row.get("first_contact")), _hours(row.get("plan")), _hours(row.get("resolve"))],
            )
        )
    g.table("deadlines", ["color"], ["first_contact_h", "plan_h", "resolve_h"], d_rows)
    g.expressions(
        "deadlines_excluded",
        [
            ("plan_h", "excluded ? null : plan_h"),
            ("accept_h", "excluded ? null : 360"),
            ("resolve_h", "excluded ? null : resolve_h"),
        ],
    )
    g.expressions(
        "deadlines_legal_aid",
        [
            (
                "plan_h",
                f'excluded == false and category == "legal_aid" and (plan_h == null or plan_h > {LEGAL_AID_PLAN_H})'
                f" ? {LEGAL_AID_PLAN_H} : plan_h",
            ),
        ],
    )

    # path: the stages still ahead; arbitration only for arbitrable categories.
    p_rows: list[tuple[list[str], list[str]]] = [(["true", "", ""], ["[]"])]
    for i, s in enumerate(STAGES):
        for arb in (True, False):
            later = [x for x in STAGES[i + 1 :] if x != "ARBITRATE" or arb]
            p_rows.append((["", _s(s), _lit(arb)], [_lit(later)]))
    g.table("path", ["excluded", "stage", "cat_arbitrable"], ["path"], p_rows)
    return g.finish()


def render(pack_dir: str | Path = ROOT / "rules" / "wushen") -> str:
    return json.dumps(build(load_pack(pack_dir)), ensure_ascii=False, indent=1) + "\n"


def main() -> int:
    GRAPH.write_text(render(), encoding="utf-8")
    print(f"wrote {GRAPH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
