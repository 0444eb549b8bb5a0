"""What a rule may test and what a rule may set.

Rules test *complaint fields* (what the citizen's front end sent, normalized) and *decision fields*
(what earlier stages set). Rules set decision fields only. Each field has a type, which the pack checker
uses to refuse comparisons the engine would get silently wrong (a number compared with text, an enum
value that does not exist, a department code nobody defined).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

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
            "time": "a time",
        }[self.kind]


def _enum(values: tuple[str, ...], optional: bool = True) -> FieldType:
    return FieldType("enum", ((model.UNSPECIFIED,) if optional else ()) + values)


@dataclass(frozen=True, slots=True)
class ComplaintField:
    """One complaint field, declared once: its type, the value it takes when absent, where the proto
    ``Complaint`` carries it (a path such as ``region.village_code``; "" when derived before the engine
    and never sent), its Chinese display name, whether it is personal data (used by no rule, hashed or
    masked wherever it is written), whether rules may test it, and whether an enricher derives it."""

    name: str  # as rules name it (``region.village_code``)
    type: FieldType
    default: object
    proto: str = ""
    zh: str = ""
    personal: bool = False
    testable: bool = True  # title and text only through keywords / pattern; id, received_at never
    derived: bool = False
    limit: int = 0  # the longest a text field may be (characters)

    @property
    def top(self) -> str:
        """The proto ``Complaint`` field that carries it (``region`` for ``region.village_code``)."""
        return self.proto.split(".", 1)[0]


def _sent(name: str, ftype: FieldType, default: object, zh: str, **kw: Any) -> ComplaintField:
    return ComplaintField(name, ftype, default, proto=name, zh=zh, **kw)


def _derived(name: str, ftype: FieldType, default: object, zh: str) -> ComplaintField:
    return ComplaintField(name, ftype, default, zh=zh, derived=True)


_TEXT: Final = FieldType("text")
_BOOL: Final = FieldType("bool")
_CATEGORY: Final = FieldType("code", table="categories")
_BOOL_ZH: Final = {
    "cross_village": "跨村",
    "cross_township": "跨苏木镇",
    "vulnerable": "弱势群体",
    "extreme_risk": "极端风险",
    "conflict_verbal": "言语冲突",
    "escalation_intent": "扬言升级",
    "sensitive_period": "敏感时期",
    "new_facts": "新事实",
    "crime_involved": "涉嫌犯罪",
}

#: Every complaint field, then the fields enrichers derive. ``COMPLAINT_FIELDS``
#: is derived from it; ``convert`` (proto ↔ complaint) and the decision log read it, and a test checks
#: it against ``model.Complaint`` and the proto's ``Complaint``.
COMPLAINT_TABLE: Final[tuple[ComplaintField, ...]] = (
    _sent("id", _TEXT, "", "编号", testable=False, limit=model.MAX_ID),
    _sent("received_at", FieldType("time"), None, "受理时间", testable=False),
    _sent("title", _TEXT, "", "标题", testable=False, limit=model.MAX_TITLE),
    _sent("text", _TEXT, "", "内容", testable=False, limit=model.MAX_TEXT),
    _sent("channel", _enum(model.CHANNELS), model.UNSPECIFIED, "渠道"),
    _sent("intent", _enum(model.INTENTS), model.UNSPECIFIED, "诉求类型"),
    _sent("received_tier", _enum(model.TIERS), model.UNSPECIFIED, "受理层级"),
    _sent("public_opinion", _enum(model.PUBLIC_OPINIONS, optional=False), "NONE", "舆情"),
    _sent("procedure", _enum(model.PROCEDURES, optional=False), "NONE", "程序状态"),
    _sent("last_stage", _enum(model.STAGES), model.UNSPECIFIED, "上次阶段"),
    _sent("last_outcome", _enum(model.OUTCOMES), model.UNSPECIFIED, "上次结果"),
    _sent("people_involved", FieldType("int"), 1, "涉及人数"),
    _sent("repeat_visits", FieldType("int"), 0, "重复访次数"),
    _sent("amount_yuan", FieldType("number"), 0.0, "涉及金额"),
    *(_sent(n, _BOOL, False, _BOOL_ZH[n]) for n in model.COMPLAINT_BOOLS),
    # The category the hint names (matched by code in any case or by Chinese name), or "" when the
    # hint is absent or names no category.
    _sent("category_hint", _CATEGORY, "", "类别提示", limit=model.MAX_HINT),
    _sent("existing_case_id", _TEXT, "", "已有案件编号", limit=model.MAX_ID),
    *(
        ComplaintField(f"region.{n}", _TEXT, "", proto=f"region.{n}", zh=zh, limit=model.MAX_CODE)
        for n, zh in zip(model.REGION_FIELDS, ("旗", "苏木镇", "嘎查村"), strict=True)
    ),
    *(
        ComplaintField(
            f"complainant.{n}",
            _TEXT,
            "",
            proto=f"complainant.{n}",
            zh=zh,
            personal=True,
            testable=False,
            limit=model.MAX_PERSONAL,
        )
        for n, zh in zip(model.COMPLAINANT_FIELDS, ("姓名", "身份证号", "电话"), strict=True)
    ),
    # The receiving point, when the front end names it: read by the matter step, not by rules.
    ComplaintField(
        "receiving_point.code",
        _TEXT,
        "",
        proto="receiving_point.code",
        zh="受理点代码",
        testable=False,
        limit=model.MAX_CODE,
    ),
    ComplaintField(
        "receiving_point.level",
        _enum(model.TIERS),
        model.UNSPECIFIED,
        proto="receiving_point.level",
        zh="受理点层级",
        testable=False,
    ),
    # Derived from the title and text by the pack's enrichers, before the engine (fenliu.engine.enrich): the
    # lexicon's best category and whether it passed the pack's threshold and margin; the text model's
    # category and whether it passed its confidence; whether the two name the same category. Few
    # values each, so the class of input stays small.
    _derived("text_category", _CATEGORY, "", "文本类别"),
    _derived("text_confident", _BOOL, False, "文本类别可信"),
    _derived("model_category", _CATEGORY, "", "模型类别"),
    _derived("model_confident", _BOOL, False, "模型类别可信"),
    _derived("model_agrees", _BOOL, False, "模型与词表一致"),
    # Derived from the matter store by the matter step, before the engine (fenliu.matter.enricher): the
    # matter's history within the window. Without a store they keep these defaults (no history).
    _derived("matter_history_available", _BOOL, False, "事项历史可用"),
    ComplaintField("matter_id", _TEXT, "", zh="事项编号", derived=True, testable=False),
    _derived("matter_prior_complaints", FieldType("int"), 0, "此前诉求次数"),
    _derived("matter_channel_count", FieldType("int"), 0, "渠道数"),
    _derived("matter_point_count", FieldType("int"), 0, "受理点数"),
    _derived("matter_level_count", FieldType("int"), 0, "受理层级数"),
    _derived("matter_days_since_first", FieldType("int"), 0, "距首次受理天数"),
    _derived("matter_first_point", _TEXT, "", "首接受理点"),
    _derived("matter_first_level", _enum(model.TIERS), model.UNSPECIFIED, "首接层级"),
    _derived("matter_linked_by", _TEXT, "", "关联依据"),
    _derived("matter_first_owner", FieldType("code", table="departments"), "", "首接牵头部门"),
    # Derived from the matter's events (fenliu.matter.events): the event whose FAILED or REFUSED outcome
    # re-triages this complaint ("" when none did), and the department the matter was handed on to.
    ComplaintField("matter_outcome_event", _TEXT, "", zh="再分流依据事件", derived=True, testable=False),
    _derived("matter_owner", FieldType("code", table="departments"), "", "移交后牵头部门"),
)

#: Complaint fields rules may test (title and text only through `keywords` / `pattern`).
COMPLAINT_FIELDS: Final[dict[str, FieldType]] = {f.name: f.type for f in COMPLAINT_TABLE if f.testable}

#: The complaint fields by name (``region.village_code``, ``complainant.phone`` style names).
COMPLAINT_BY_NAME: Final[dict[str, ComplaintField]] = {f.name: f for f in COMPLAINT_TABLE}


def complaint_fields(*, kind: str | None = None, top: str = "", derived: bool = False) -> tuple[str, ...]:
    """Names of the sent (or, with ``derived``, the derived) complaint fields of one kind, those under
    one proto submessage (``top="region"``: the names within it) or, without ``top``, the top-level
    ones."""
    out = []
    for f in COMPLAINT_TABLE:
        if f.derived != derived or (kind is not None and f.type.kind != kind):
            continue
        if top:
            if f.top == top and "." in f.proto:
                out.append(f.proto.split(".", 1)[1])
        elif "." not in f.name:
            out.append(f.name)
    return tuple(out)


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
