"""What a rule may test and what a rule may set.

Rules test *complaint fields* (what the citizen's front end sent, normalized) and *decision fields*
(what earlier stages set). Rules set decision fields only. Each field has a type, which the pack checker
uses to refuse comparisons the engine would get silently wrong (a number compared with text, an enum
value that does not exist, a department code nobody defined).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fenliu.domain import model

# Types: "enum" (values listed), "int", "number", "bool", "text", "code" (a key of table `table`),
# "codes" (a list of such keys), "duration" (hours; written 2h / 3d / none).


@dataclass(frozen=True, slots=True)
class FieldType:
    kind: str
    values: tuple[str, ...] = ()
    table: str = ""

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "number")

    def describe(self) -> str:
        if self.kind == "enum":
            return "one of " + ", ".join(self.values)
        if self.kind == "code":
            return f"a code of table '{self.table}'"
        if self.kind == "codes":
            return f"a list of codes of table '{self.table}'"
        return {
            "int": "a whole number",
            "number": "a number",
            "bool": "true or false",
            "text": "text",
            "duration": "a duration such as 2h or 15d, or none",
        }[self.kind]


def _enum(values: tuple[str, ...], optional: bool = True) -> FieldType:
    return FieldType("enum", ((model.UNSPECIFIED,) if optional else ()) + values)


#: Complaint fields rules may test (title and text only through `keywords` / `pattern`).
COMPLAINT_FIELDS: Final[dict[str, FieldType]] = {
    "channel": _enum(model.CHANNELS),
    "intent": _enum(model.INTENTS),
    "received_tier": _enum(model.TIERS),
    "public_opinion": _enum(model.PUBLIC_OPINIONS, optional=False),
    "procedure": _enum(model.PROCEDURES, optional=False),
    "last_stage": _enum(model.STAGES),
    "last_outcome": _enum(model.OUTCOMES),
    "people_involved": FieldType("int"),
    "repeat_visits": FieldType("int"),
    "amount_yuan": FieldType("number"),
    **{name: FieldType("bool") for name in model.COMPLAINT_BOOLS},
    # The category the hint names (matched by code in any case or by Chinese name), or "" when the
    # hint is absent or names no category.
    "category_hint": FieldType("code", table="categories"),
    "existing_case_id": FieldType("text"),
    "region.banner_code": FieldType("text"),
    "region.township_code": FieldType("text"),
    "region.village_code": FieldType("text"),
    # Derived from the title and text by the pack's enrichers, before the engine (fenliu.engine.enrich): the
    # lexicon's best category and whether it passed the pack's threshold and margin; the text model's
    # category and whether it passed its confidence; whether the two name the same category. Few
    # values each, so the class of input stays small.
    "text_category": FieldType("code", table="categories"),
    "text_confident": FieldType("bool"),
    "model_category": FieldType("code", table="categories"),
    "model_confident": FieldType("bool"),
    "model_agrees": FieldType("bool"),
}


@dataclass(frozen=True, slots=True)
class DecisionField:
    """One decision field, declared once: what rules may set, where it starts, how conflicts between
    the rules of one stage resolve (:mod:`fenliu.engine.resolution`), what the proto calls what it reaches, and
    its Chinese display name."""

    name: str
    type: FieldType
    default: object
    resolve: str = "first"  # "first" or "highest" (by the order fenliu.engine.resolution declares)
    proto: str = ""  # the proto Decision field it reaches ("" when a deadline: Decision.deadlines)
    zh: str = ""


#: The decision fields rules may set (and later stages may test), in the contract's order. Everything
#: below (``DECISION_FIELDS``, ``RESOLUTION``, ``BUILTIN_DEFAULTS``) is derived from this table, and a
#: test checks it against ``Outcome`` and the proto's ``Decision``.
DECISION_TABLE: Final[tuple[DecisionField, ...]] = (
    DecisionField(
        "category", FieldType("code", table="categories"), model.UNCLASSIFIED, proto="category", zh="类别"
    ),
    DecisionField("excluded", FieldType("bool"), False, proto="excluded", zh="不予代办"),
    DecisionField(
        "exclusion", FieldType("code", table="exclusions"), "", proto="exclusion", zh="不予代办事由"
    ),
    DecisionField(
        "referred_to", FieldType("code", table="departments"), "", proto="referred_to", zh="转交机关"
    ),
    DecisionField("color", FieldType("enum", model.COLORS), "BLUE", "highest", proto="color", zh="预警颜色"),
    DecisionField("tier", FieldType("enum", model.TIERS), "BANNER", proto="tier", zh="层级"),
    DecisionField(
        "approach", FieldType("enum", (*model.APPROACHES, "NONE")), "NONE", proto="approach", zh="调处方式"
    ),
    DecisionField(
        "owner_department",
        FieldType("code", table="departments"),
        "",
        proto="owner_department",
        zh="牵头部门",
    ),
    DecisionField(
        "co_departments", FieldType("codes", table="departments"), (), proto="co_departments", zh="协办部门"
    ),
    DecisionField("stage", FieldType("enum", model.STAGES), "ASSESS", proto="stage", zh="阶段"),
    DecisionField("statutory_route", FieldType("text"), "", proto="statutory_route", zh="法定途径"),
    DecisionField("first_contact_within", FieldType("duration"), None, zh="首次联系时限"),
    DecisionField("plan_within", FieldType("duration"), None, zh="方案时限"),
    DecisionField("accept_within", FieldType("duration"), None, zh="受理时限"),
    DecisionField("resolve_within", FieldType("duration"), None, zh="办结时限"),
)

#: Decision fields rules may set, and later stages may test.
DECISION_FIELDS: Final[dict[str, FieldType]] = {f.name: f.type for f in DECISION_TABLE}

#: How rules of one stage that set the same decision field are reconciled. "first": the rule with the
#: highest priority wins, ties go to the rule defined first. "highest": the highest value in the
#: field's declared order wins (colour: RED over YELLOW over BLUE), whatever the priorities.
RESOLUTION: Final[dict[str, str]] = {f.name: f.resolve for f in DECISION_TABLE}

#: Starting values of decision fields, before any stage runs; a pack's manifest `defaults` override them.
BUILTIN_DEFAULTS: Final[dict[str, object]] = {f.name: f.default for f in DECISION_TABLE}

DEADLINE_SLOTS: Final = {
    "first_contact_within": "first_contact_by",
    "plan_within": "plan_by",
    "accept_within": "accept_by",
    "resolve_within": "resolve_by",
}

#: Keys of the tables every pack must have, and the columns their rows must carry.
REQUIRED_TABLES: Final[dict[str, dict[str, FieldType]]] = {
    "departments": {"name": FieldType("text")},
    "exclusions": {"name": FieldType("text")},
    "categories": {
        "name": FieldType("text"),
        "owner": FieldType("code", table="departments"),
        "entry_stage": FieldType("enum", model.STAGES),
        "arbitrable": FieldType("bool"),
    },
}

STAGE_NAMES_ZH: Final = {
    "CONSULT": "咨询",
    "ASSESS": "评估",
    "MEDIATE": "调解",
    "ARBITRATE": "仲裁",
    "LITIGATE": "诉讼",
}
COLOR_NAMES_ZH: Final = {"RED": "红色", "YELLOW": "黄色", "BLUE": "蓝色"}
TIER_NAMES_ZH: Final = {"VILLAGE": "嘎查村", "TOWNSHIP": "苏木镇", "BANNER": "旗"}
APPROACH_NAMES_ZH: Final = {"IMMEDIATE": "即知即调", "DIVERTED": "分流分调", "JOINT": "联管联调", "NONE": ""}

DEFAULT_STAGES: Final = ("classify", "exclude", "grade", "route", "funnel", "deadlines")


def parse_duration(value: object) -> int | None:
    """``2h`` → 2, ``3d`` → 72, ``none`` → None. Raises ValueError otherwise."""
    if value is None or value == "none":
        return None
    if isinstance(value, str) and len(value) >= 2 and value[:-1].isdigit():
        n = int(value[:-1])
        if value[-1] == "h":
            return n
        if value[-1] == "d":
            return n * 24
    raise ValueError("a duration is written like 2h or 15d, or none")


def format_duration(hours: int | None) -> str:
    if hours is None:
        return "none"
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"
