"""The domain vocabulary: the complaint fenliu receives and the decision it returns.

Field names follow ``spec/domain.md`` (snake_case, as in the proto). This module holds no rule logic:
it validates a complaint (naming every bad field), and it describes a decision.

Personal data (``complainant``: name, id_number, phone) is kept on the complaint only so that it can be
masked in the decision log; no rule sees it and no error message ever quotes it. Error messages never
quote any submitted value, only field names and the allowed values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Protocol, TypeAlias

from fenliu.domain.errors import ComplaintError, FieldViolation
from fenliu.domain.personal import looks_personal, malformed_personal_fields

#: JSON-shaped data (what ``json.loads`` gives, what ``json.dumps`` and ``to_dict`` give back): nested
#: values are read-only views, so that a ``dict[str, str]`` or a ``list[Json]`` is one.
JsonValue: TypeAlias = "str | int | float | bool | Sequence[JsonValue] | Mapping[str, JsonValue] | None"
#: A JSON object.
Json: TypeAlias = dict[str, JsonValue]

#: Local time of the banner: a timestamp without an offset is read in this zone.
LOCAL_TZ: Final = timezone(timedelta(hours=8))

UNSPECIFIED: Final = "UNSPECIFIED"
UNCLASSIFIED: Final = "unclassified"

CHANNELS: Final = ("VISIT", "LETTER", "PHONE", "ONLINE", "MOBILE", "AGENT_VISIT")
INTENTS: Final = ("PETITION", "SUGGESTION", "MEDIATION", "LITIGATION", "CONSULTATION", "LEGAL_AID", "REPORT")
TIERS: Final = ("VILLAGE", "TOWNSHIP", "BANNER")
PUBLIC_OPINIONS: Final = ("NONE", "LOCAL", "VIRAL")
PROCEDURES: Final = (
    "NONE",
    "LITIGATION_PENDING",
    "ARBITRATION_PENDING",
    "ADMIN_REVIEW_PENDING",
    "JUDGMENT_EFFECTIVE",
    "REVIEW_TERMINATED",
)
STAGES: Final = ("CONSULT", "ASSESS", "MEDIATE", "ARBITRATE", "LITIGATE")
OUTCOMES: Final = ("RESOLVED", "FAILED", "REFUSED")
COLORS: Final = ("BLUE", "YELLOW", "RED")
APPROACHES: Final = ("IMMEDIATE", "DIVERTED", "JOINT")

#: Enumerations of complaint fields. A field absent from the complaint takes the first value listed
#: under ``ENUM_DEFAULTS`` (``UNSPECIFIED`` unless the contract names a default).
COMPLAINT_ENUMS: Final[dict[str, tuple[str, ...]]] = {
    "channel": CHANNELS,
    "intent": INTENTS,
    "received_tier": TIERS,
    "public_opinion": PUBLIC_OPINIONS,
    "procedure": PROCEDURES,
    "last_stage": STAGES,
    "last_outcome": OUTCOMES,
}
ENUM_DEFAULTS: Final[dict[str, str]] = {"public_opinion": "NONE", "procedure": "NONE"}

COMPLAINT_BOOLS: Final = (
    "cross_village",
    "cross_township",
    "vulnerable",
    "extreme_risk",
    "conflict_verbal",
    "escalation_intent",
    "sensitive_period",
    "new_facts",
    "crime_involved",
)
COMPLAINT_INTS: Final = ("people_involved", "repeat_visits")
COMPLAINT_FLOATS: Final = ("amount_yuan",)
REGION_FIELDS: Final = ("banner_code", "township_code", "village_code")
COMPLAINANT_FIELDS: Final = ("name", "id_number", "phone")
#: The receiving point (服务中心 / 服务站 / 服务点): its region code and its level.
RECEIVING_POINT_FIELDS: Final = ("code", "level")
#: A receiving point's code by its level: the banner's centre, a township's station, a village's point.
POINT_CODE_LENGTHS: Final[dict[str, int]] = {"BANNER": 6, "TOWNSHIP": 9, "VILLAGE": 12}
POINT_CODE_FORMAT: Final = (
    "must be an administrative-division code of 6 (banner centre), 9 (township station) "
    "or 12 (village point) digits"
)

#: Documented size limits (characters). See docs/api.md.
MAX_ID = 128
MAX_TITLE = 200
MAX_TEXT = 20_000
MAX_HINT = 64
MAX_CODE = 64
MAX_PERSONAL = 128
MAX_COUNT = 1_000_000_000
MAX_AMOUNT = 1e15

#: The range of ``received_at``. Every deadline counts from it, and a deadline is at most the statutory
#: 60 days, extendable by 30: received_at must leave 90 days (and a day for any time zone offset) before
#: the end of what a ``google.protobuf.Timestamp`` holds (9999-12-31), and a day after its start (0001-01-01).
EARLIEST_RECEIVED_AT: Final = datetime(1, 1, 2, tzinfo=UTC)
LATEST_RECEIVED_AT: Final = datetime(9999, 9, 30, 23, 59, 59, 999_999, tzinfo=UTC)
RECEIVED_AT_RANGE: Final = (
    "must lie between 0001-01-02T00:00:00Z and 9999-09-30T23:59:59Z (every deadline must be a valid time)"
)

_STRING_LIMITS: Final = {
    "id": MAX_ID,
    "title": MAX_TITLE,
    "text": MAX_TEXT,
    "category_hint": MAX_HINT,
    "existing_case_id": MAX_ID,
}
_KINDS: Final[dict[str, str]] = {
    **{name: "str" for name in _STRING_LIMITS},
    **{name: "enum" for name in COMPLAINT_ENUMS},
    **{name: "bool" for name in COMPLAINT_BOOLS},
    **{name: "int" for name in COMPLAINT_INTS},
    **{name: "float" for name in COMPLAINT_FLOATS},
    "region": "region",
    "complainant": "complainant",
    "receiving_point": "receiving_point",
    "received_at": "received_at",
}
#: Region codes are administrative-division codes (行政区划代码): digits, 6 for a banner (150626),
#: 9 for a township (150626100) and 12 for a village (150626100201); a township or village may also be
#: given by its 3-digit number within the level above. An id number or a phone is none of these.
REGION_CODE_LENGTHS: Final[dict[str, tuple[int, ...]]] = {
    "banner_code": (6,),
    "township_code": (3, 9),
    "village_code": (3, 12),
}
#: A case number (existing_case_id): letters, digits, Chinese characters and ``- _ . / : # ( ) 〔 〕 [ ]``
#: (WS-2026-0137, 乌信〔2026〕12号), starting with a letter, digit or Chinese character.
CASE_ID: Final = re.compile(r"[0-9A-Za-z\u4e00-\u9fff][0-9A-Za-z\u4e00-\u9fff\-_./:#()（）〔〕\[\]]*")
CASE_ID_FORMAT: Final = (
    "must be a case number: letters, digits, Chinese characters and - _ . / : # ( ) 〔 〕 [ ], "
    "not an id number or a phone number"
)


def region_code_ok(name: str, code: str) -> bool:
    """Whether ``code`` (stripped) has the shape of the region field ``name``."""
    return code.isascii() and code.isdigit() and len(code) in REGION_CODE_LENGTHS[name]


def case_id_ok(case_id: str) -> bool:
    """Whether a non-blank ``existing_case_id`` (stripped) is shaped like a case number."""
    return CASE_ID.fullmatch(case_id) is not None and not looks_personal(case_id)


def region_format(name: str) -> str:
    lengths = " or ".join(str(n) for n in REGION_CODE_LENGTHS[name])
    return f"must be an administrative-division code of {lengths} digits"


_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _key_name(key: object) -> str:
    """An unknown key is named only when it looks like a field name: a key may carry anything."""
    return key if isinstance(key, str) and _IDENT.fullmatch(key) else "<unnamed>"


@dataclass(frozen=True, slots=True)
class Complainant:
    """Personal data. Used by no rule; masked before anything is written anywhere."""

    name: str = ""
    id_number: str = ""
    phone: str = ""

    def __repr__(self) -> str:  # never print personal data by accident
        return "Complainant(<redacted>)"

    def notes(self) -> tuple[str, ...]:
        """A note per field that is given but malformed: kept as given, used hashed for matching, and
        never a reason to refuse the complaint (contract v2). Names the field, never its value."""
        return tuple(
            f"{name} is malformed (length or check digit); it was kept as given and is used only hashed, "
            "for matching; the complaint is accepted"
            for name in malformed_personal_fields(self.id_number, self.phone)
        )


@dataclass(frozen=True, slots=True)
class Complaint:
    """A validated, normalized complaint. Build it with :func:`complaint_from_dict`."""

    id: str
    received_at: datetime
    text: str = ""
    title: str = ""
    category_hint: str = ""
    channel: str = UNSPECIFIED
    intent: str = UNSPECIFIED
    received_tier: str = UNSPECIFIED
    public_opinion: str = "NONE"
    procedure: str = "NONE"
    last_stage: str = UNSPECIFIED
    last_outcome: str = UNSPECIFIED
    people_involved: int = 1
    repeat_visits: int = 0
    amount_yuan: float = 0.0
    cross_village: bool = False
    cross_township: bool = False
    vulnerable: bool = False
    extreme_risk: bool = False
    conflict_verbal: bool = False
    escalation_intent: bool = False
    sensitive_period: bool = False
    new_facts: bool = False
    crime_involved: bool = False
    existing_case_id: str = ""
    region: Mapping[str, str] = field(default_factory=dict)
    complainant: Complainant = field(default_factory=Complainant)
    #: ``code`` and ``level`` of the receiving point, when the front end names it.
    receiving_point: Mapping[str, str] = field(default_factory=dict)
    received_at_given: bool = True
    # Derived by the pack's enrichers (fenliu.engine.enrich) from the title and text, before the engine runs;
    # never sent by a client. ``enriched``: the derived fields are final (given by a test case, or
    # already derived), so the enrichers leave them as they are.
    text_category: str = ""
    text_confident: bool = False
    model_category: str = ""
    model_confident: bool = False
    model_agrees: bool = False
    # Derived by the matter step (fenliu.matter.enricher) from the matter store, before the engine; the
    # defaults are a complaint with no history (no store, or the store did not answer).
    matter_history_available: bool = False
    matter_id: str = ""
    matter_prior_complaints: int = 0
    matter_channel_count: int = 0
    matter_point_count: int = 0
    matter_level_count: int = 0
    matter_days_since_first: int = 0
    matter_first_point: str = ""
    matter_first_level: str = UNSPECIFIED
    matter_linked_by: str = ""
    matter_first_owner: str = ""
    matter_outcome_event: str = ""
    matter_owner: str = ""
    evidence: TextEvidence | None = None
    enriched: bool = False

    def value(self, name: str) -> Any:
        """The value of a rule-visible field (``region.township_code`` style names allowed)."""
        if name.startswith("region."):
            return self.region.get(name[7:], "")
        return getattr(self, name)


def _type_name(v: object) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "object"
    return "null" if v is None else type(v).__name__


def parse_timestamp(value: str) -> datetime:
    """ISO 8601; a timestamp without an offset is banner local time (+08:00)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=LOCAL_TZ)
    return dt


#: The prefix of each complaint enum's values in the proto (``CHANNEL_VISIT``): accepted in the JSON form
#: too, so a complaint written for grpcurl (the proto's JSON mapping) reads the same as one for fenliu.
ENUM_PREFIXES: Final[dict[str, str]] = {
    "channel": "CHANNEL_",
    "intent": "INTENT_",
    "received_tier": "TIER_",
    "public_opinion": "PUBLIC_OPINION_",
    "procedure": "PROCEDURE_",
    "last_stage": "STAGE_",
    "last_outcome": "OUTCOME_",
}


def _closest(value: str, allowed: tuple[str, ...]) -> str:
    """ "; did you mean X?" with the allowed value nearest a mistyped one (only an allowed value is
    quoted, never what was submitted)."""
    import difflib

    near = difflib.get_close_matches(value.upper(), allowed, n=1, cutoff=0.6)
    return f"; did you mean {near[0]}?" if near else ""


def complaint_from_dict(data: object, *, now: datetime | None = None) -> Complaint:
    """Validate and normalize a complaint given as a JSON-like mapping.

    Raises :class:`ComplaintError` listing *every* bad field. Messages name fields and allowed values,
    never the submitted values.
    """
    bad: list[FieldViolation] = []
    if not isinstance(data, Mapping):
        raise ComplaintError(
            [FieldViolation("", f"a complaint must be a JSON object, not {_type_name(data)}")]
        )

    out: dict[str, Any] = {}
    for name, v in data.items():
        kind = _KINDS.get(name) if isinstance(name, str) else None
        if kind is None:
            bad.append(FieldViolation(_key_name(name), "unknown field"))
        elif v is None or kind in ("region", "complainant", "receiving_point", "received_at"):
            continue  # absent; the structured fields are read below
        elif kind == "str":
            if not isinstance(v, str):
                bad.append(FieldViolation(name, f"must be a string, not {_type_name(v)}"))
            elif len(v) > _STRING_LIMITS[name]:
                bad.append(FieldViolation(name, f"is longer than {_STRING_LIMITS[name]} characters"))
            elif _SURROGATE.search(v):
                bad.append(FieldViolation(name, "contains invalid Unicode (a lone surrogate)"))
            elif "\x00" in v:
                bad.append(FieldViolation(name, "contains a NUL character"))
            elif v.strip():  # a string of whitespace only is absent (a blank existing_case_id names no case)
                out[name] = v
        elif kind == "enum":
            allowed = COMPLAINT_ENUMS[name]
            if isinstance(v, str) and v.startswith(ENUM_PREFIXES[name]):
                v = v[len(ENUM_PREFIXES[name]) :]  # the proto's spelling (CHANNEL_VISIT) is VISIT
            if v == UNSPECIFIED or v == "":
                continue
            if not isinstance(v, str):
                bad.append(FieldViolation(name, f"must be a string, not {_type_name(v)}"))
            elif v not in allowed:
                bad.append(
                    FieldViolation(
                        name, "unknown value; allowed: " + ", ".join(allowed) + _closest(v, allowed)
                    )
                )
            else:
                out[name] = v
        elif kind == "bool":
            if not isinstance(v, bool):
                bad.append(FieldViolation(name, f"must be true or false, not {_type_name(v)}"))
            else:
                out[name] = v
        elif kind == "int":
            if isinstance(v, bool) or not isinstance(v, int | float):
                bad.append(FieldViolation(name, f"must be a whole number, not {_type_name(v)}"))
            elif isinstance(v, float) and (not math.isfinite(v) or not v.is_integer()):
                bad.append(FieldViolation(name, "must be a whole number"))
            elif v < 0:
                bad.append(FieldViolation(name, "must not be negative"))
            elif v > MAX_COUNT:
                bad.append(FieldViolation(name, f"must not exceed {MAX_COUNT}"))
            else:
                out[name] = int(v)
        elif isinstance(v, bool) or not isinstance(v, int | float):  # kind == "float"
            bad.append(FieldViolation(name, f"must be a number, not {_type_name(v)}"))
        elif not math.isfinite(v):
            bad.append(FieldViolation(name, "must be a finite number"))
        elif v < 0:
            bad.append(FieldViolation(name, "must not be negative"))
        elif v > MAX_AMOUNT:
            bad.append(FieldViolation(name, f"must not exceed {MAX_AMOUNT:.0e}"))
        else:
            out[name] = float(v)

    case_id = out.get("existing_case_id", "").strip()
    if case_id and not case_id_ok(case_id):
        bad.append(FieldViolation("existing_case_id", CASE_ID_FORMAT))
        out.pop("existing_case_id")
    cid = out.get("id", "")
    if "id" not in data or (isinstance(data.get("id"), str) and not cid.strip()):
        bad.append(FieldViolation("id", "is required"))
    no_words = not out.get("text", "").strip() and not out.get("category_hint", "").strip()
    if no_words and not any(v.field in ("text", "category_hint") for v in bad):
        bad.append(FieldViolation("text", "text or category_hint is required"))

    region = data.get("region")
    if region is not None:
        if not isinstance(region, Mapping):
            bad.append(FieldViolation("region", f"must be an object, not {_type_name(region)}"))
        else:
            reg: dict[str, str] = {}
            for k, v in region.items():
                if k not in REGION_FIELDS:
                    bad.append(FieldViolation(f"region.{_key_name(k)}", "unknown field"))
                elif v is None:
                    continue
                elif not isinstance(v, str):
                    bad.append(FieldViolation(f"region.{k}", f"must be a string, not {_type_name(v)}"))
                elif len(v) > MAX_CODE or _SURROGATE.search(v) or "\x00" in v:
                    bad.append(
                        FieldViolation(f"region.{k}", f"must be a code of at most {MAX_CODE} characters")
                    )
                elif not v.strip():
                    pass  # whitespace only: absent
                elif not region_code_ok(k, v.strip()):
                    bad.append(FieldViolation(f"region.{k}", region_format(k)))
                else:
                    reg[k] = v.strip()
            out["region"] = reg

    person = data.get("complainant")
    if person is not None:
        if not isinstance(person, Mapping):
            bad.append(FieldViolation("complainant", f"must be an object, not {_type_name(person)}"))
        else:
            pdata: dict[str, str] = {}
            for k, v in person.items():
                if k not in COMPLAINANT_FIELDS:
                    bad.append(FieldViolation(f"complainant.{_key_name(k)}", "unknown field"))
                elif v is None:
                    continue
                elif not isinstance(v, str):
                    bad.append(FieldViolation(f"complainant.{k}", "must be a string"))
                elif len(v) > MAX_PERSONAL or _SURROGATE.search(v) or "\x00" in v:
                    bad.append(
                        FieldViolation(f"complainant.{k}", f"must be at most {MAX_PERSONAL} characters")
                    )
                elif v.strip():
                    pdata[k] = v
            out["complainant"] = Complainant(**pdata)

    point = data.get("receiving_point")
    if point is not None:
        if not isinstance(point, Mapping):
            bad.append(FieldViolation("receiving_point", f"must be an object, not {_type_name(point)}"))
        else:
            rp = _receiving_point(point, bad)
            if rp is not None:
                out["receiving_point"] = rp

    received_at: datetime | None = None
    ra = data.get("received_at")
    if ra is not None:
        if not isinstance(ra, str):
            bad.append(
                FieldViolation("received_at", f"must be an ISO 8601 timestamp string, not {_type_name(ra)}")
            )
        else:
            try:
                received_at = parse_timestamp(ra)
            except ValueError:
                bad.append(FieldViolation("received_at", "is not an ISO 8601 timestamp"))
            else:
                if not EARLIEST_RECEIVED_AT <= received_at <= LATEST_RECEIVED_AT:
                    bad.append(FieldViolation("received_at", RECEIVED_AT_RANGE))

    if bad:
        raise ComplaintError(bad)

    given = received_at is not None
    if received_at is None:
        received_at = (now or datetime.now(UTC)).astimezone(LOCAL_TZ)
    if out.get("people_involved", 1) == 0:  # proto3 cannot tell 0 from unset: 0 means "unknown" = 1
        out["people_involved"] = 1
    return Complaint(received_at=received_at, received_at_given=given, **out)


def _receiving_point(point: Mapping[object, object], bad: list[FieldViolation]) -> dict[str, str] | None:
    """The receiving point's code and level, or None (and a violation per bad field)."""
    given: dict[str, str] = {}
    ok = True
    for k, v in point.items():
        if k not in RECEIVING_POINT_FIELDS:
            bad.append(FieldViolation(f"receiving_point.{_key_name(k)}", "unknown field"))
            ok = False
        elif v is None or v == "" or (k == "level" and v == UNSPECIFIED):
            continue
        elif not isinstance(v, str):
            bad.append(FieldViolation(f"receiving_point.{k}", f"must be a string, not {_type_name(v)}"))
            ok = False
        elif not v.strip():
            continue  # whitespace only: absent
        elif k == "level":
            v = v[len("TIER_") :] if v.startswith("TIER_") else v  # the proto's spelling
            if v == UNSPECIFIED:
                continue
            if v not in TIERS:
                bad.append(
                    FieldViolation("receiving_point.level", "unknown value; allowed: " + ", ".join(TIERS))
                )
                ok = False
            else:
                given[k] = v
        elif len(v) > MAX_CODE or _SURROGATE.search(v) or "\x00" in v or not point_code_ok(v.strip()):
            bad.append(FieldViolation("receiving_point.code", POINT_CODE_FORMAT))
            ok = False
        else:
            given[k] = v.strip()
    if not ok:
        return None
    code, level = given.get("code", ""), given.get("level", "")
    if code and level and len(code) != POINT_CODE_LENGTHS[level]:
        bad.append(
            FieldViolation(
                "receiving_point.code", f"must have {POINT_CODE_LENGTHS[level]} digits at level {level}"
            )
        )
        return None
    if code and not level:
        given["level"] = next(lv for lv, n in POINT_CODE_LENGTHS.items() if n == len(code))
    return given


def point_code_ok(code: str) -> bool:
    """Whether ``code`` has the shape of a receiving point's code (6, 9 or 12 ASCII digits)."""
    return code.isascii() and code.isdigit() and len(code) in POINT_CODE_LENGTHS.values()


#: Complaint fields the text enrichers derive (rules test them like any other; a test case may give them).
TEXT_DERIVED_FIELDS: Final = (
    "text_category",
    "text_confident",
    "model_category",
    "model_confident",
    "model_agrees",
)
#: Complaint fields the matter step derives from the matter store (a test case may give them).
MATTER_FIELDS: Final = (
    "matter_history_available",
    "matter_id",
    "matter_prior_complaints",
    "matter_channel_count",
    "matter_point_count",
    "matter_level_count",
    "matter_days_since_first",
    "matter_first_point",
    "matter_first_level",
    "matter_linked_by",
    "matter_first_owner",
    "matter_outcome_event",
    "matter_owner",
)
#: Every derived complaint field: the text enrichers' and the matter step's.
DERIVED_FIELDS: Final = (*TEXT_DERIVED_FIELDS, *MATTER_FIELDS)
DERIVED_BOOLS: Final = ("text_confident", "model_confident", "model_agrees", "matter_history_available")


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A category the text suggests, for the clerk to pick from, with its lexicon score."""

    category: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "score": self.score}


@dataclass(frozen=True, slots=True)
class Counted:
    """One vocabulary entry that counted for a category: a term, a together-entry (words joined with
    ``+``) or an against-entry (negative weight), with where it is written."""

    label: str
    weight: float
    source: str


@dataclass(frozen=True, slots=True)
class TextEvidence:
    """What the text step found in one complaint: the scores of the candidate categories with the entries
    that counted, the model's reading and the words that pushed it most, and the suggestions."""

    scores: tuple[tuple[str, float, tuple[Counted, ...]], ...] = ()  # best first
    model: tuple[tuple[str, float], ...] = ()  # (category, probability), best first
    model_words: tuple[tuple[str, float], ...] = ()  # (n-gram, push towards the model's category)
    suggestions: tuple[Suggestion, ...] = ()
    #: Works out ``model_words`` when a trace asks for them (most decisions are made without one).
    explain: Callable[[], tuple[tuple[str, float], ...]] | None = field(
        default=None, compare=False, repr=False
    )

    def pushed(self) -> tuple[tuple[str, float], ...]:
        return self.model_words or (self.explain() if self.explain is not None else ())

    def notes(self, *, model_words: bool = True) -> tuple[str, ...]:
        """The evidence as trace notes, one line per candidate category and one for the model: with the
        n-grams that pushed it (worked out now), or, ``model_words=False``, its reading alone."""
        out = []
        for cat, score, counted in self.scores:
            words = ", ".join(f"{c.label} {_num(c.weight)} ({c.source})" for c in counted)
            out.append(f"lexicon {cat} {_num(score)}: {words}")
        if self.model:
            cat, p = self.model[0]
            if model_words:
                pushed = ", ".join(f"{w} {v:+.2f}" for w, v in self.pushed())
                out.append(f"model {cat} {p:.2f}: {pushed}")
            else:
                out.append(f"model {cat} {p:.2f}")
        return tuple(out)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}"


# ----------------------------------------------------------------------------------------------------
# The decision


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One rule that fired: where it is, what it set, and what it lost to another rule."""

    rule: str
    stage: str
    layer: str
    file: str
    line: int
    priority: int
    set: Mapping[str, Any]
    overruled: Mapping[str, str] = field(default_factory=dict)
    matched_keywords: tuple[str, ...] = ()
    table_rows: tuple[str, ...] = ()

    def to_dict(self) -> Json:
        d: Json = {
            "rule": self.rule,
            "stage": self.stage,
            "layer": self.layer,
            "source": f"{self.file}:{self.line}",
            "priority": self.priority,
            "set": {k: list(v) if isinstance(v, tuple) else v for k, v in self.set.items()},
        }
        if self.overruled:
            d["overruled"] = dict(self.overruled)
        if self.matched_keywords:
            d["matched_keywords"] = list(self.matched_keywords)
        if self.table_rows:
            d["table_rows"] = list(self.table_rows)
        return d


@dataclass(frozen=True, slots=True)
class PackId:
    name: str
    revision: str
    digest: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "revision": self.revision, "digest": self.digest}


class Explanation(Protocol):
    """How an outcome came about, worked out when first asked for: most decisions are answered without
    a trace, and an outcome's trace costs more to build than the outcome itself."""

    def trace(self) -> tuple[TraceEntry, ...]: ...

    def rules_fired(self) -> tuple[tuple[str, str], ...]:
        """(rule, layer) of each trace entry, in order, without building the entries."""
        ...

    def keyword_rules(self) -> tuple[tuple[int, tuple[str, ...]], ...]:
        """(trace index, the rule's keywords) for the entries whose rule has keywords."""
        ...


@dataclass(frozen=True, slots=True)
class Given:
    """An :class:`Explanation` given whole: a trace already built (an outcome made by hand)."""

    entries: tuple[TraceEntry, ...] = ()
    words: tuple[tuple[int, tuple[str, ...]], ...] = ()

    def trace(self) -> tuple[TraceEntry, ...]:
        return self.entries

    def rules_fired(self) -> tuple[tuple[str, str], ...]:
        return tuple((t.rule, t.layer) for t in self.entries)

    def keyword_rules(self) -> tuple[tuple[int, tuple[str, ...]], ...]:
        return self.words


@dataclass(frozen=True, slots=True, eq=False)
class Outcome:
    """Everything a pack decides about a complaint, before ids and clock times are attached.

    It depends only on the rule-visible features of the complaint, which is what makes it safe to
    memoize per pack. Its trace is worked out when first asked for (``explanation``); two outcomes
    are equal when everything they show is, the trace included.
    """

    category: str
    excluded: bool
    exclusion: str
    referred_to: str
    color: str
    tier: str
    approach: str
    owner_department: str
    co_departments: tuple[str, ...]
    stage: str
    path: tuple[str, ...]
    statutory_route: str
    within: Mapping[str, int]  # deadline name -> hours after received_at
    guidance: str
    notes: tuple[str, ...]
    pack: PackId
    explanation: Explanation = field(repr=False)

    @property
    def trace(self) -> tuple[TraceEntry, ...]:
        """The rules that fired, in order, what each set and what overruled it."""
        return self.explanation.trace()

    @property
    def rules_fired(self) -> tuple[tuple[str, str], ...]:
        """(rule, layer) of each trace entry, in order: what metrics count, without the trace."""
        return self.explanation.rules_fired()

    @property
    def keyword_rules(self) -> tuple[tuple[int, tuple[str, ...]], ...]:
        """(trace index, the rule's keywords) for the trace entries whose rule has keywords."""
        return self.explanation.keyword_rules()

    def _shown(self) -> tuple[object, ...]:
        return (*(getattr(self, f.name) for f in _OUTCOME_FIELDS), self.trace)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        return self is other or self._shown() == other._shown()

    __hash__ = None  # type: ignore[assignment]  # ``within`` is a dict: outcomes were never hashable


_OUTCOME_FIELDS: Final = tuple(f for f in fields(Outcome) if f.name != "explanation")

DEADLINE_NAMES: Final = ("first_contact_by", "plan_by", "accept_by", "resolve_by")

#: The decision's outputs that a pack decides (everything but ids, guidance and the trace), in the
#: contract's order: what `fenliu diff` and the benchmark's equivalence check compare.
DECIDED_FIELDS: Final = (
    "category",
    "excluded",
    "exclusion",
    "referred_to",
    "color",
    "tier",
    "approach",
    "owner_department",
    "co_departments",
    "stage",
    "path",
    "statutory_route",
    "deadlines",
)


@dataclass(frozen=True, slots=True)
class Decision:
    complaint_id: str
    decision_id: str
    received_at: datetime
    existing_case_id: str
    outcome: Outcome
    deadlines: Mapping[str, datetime]
    decided_at: datetime
    #: The pack's keywords found in this complaint's title and text.
    keywords_present: frozenset[str] = frozenset()
    #: What the text step found (scores, the model's reading); ``None`` for a pack without a lexicon.
    evidence: TextEvidence | None = None
    #: Notes on the complainant's fields that are given but malformed (their names, never their values).
    personal_notes: tuple[str, ...] = ()
    #: What the matter store knew of the complaint's matter (``Recognition.to_dict`` and ``multi_door``);
    #: ``None`` when the service keeps no matters.
    matter: Mapping[str, JsonValue] | None = None
    #: The receiving point that owns the matter (首接: ``code``, ``level``), when one is known.
    owning_point: Mapping[str, str] | None = None
    #: What the matter step did to the complaint before the engine (e.g. the event that re-triaged it),
    #: shown with the trace's notes.
    matter_notes: tuple[str, ...] = ()

    @property
    def suggestions(self) -> tuple[Suggestion, ...]:
        """Up to three categories for the clerk to pick from, when the decision is ``unclassified``."""
        ev = self.evidence
        if ev is None or self.outcome.category != UNCLASSIFIED:
            return ()
        return ev.suggestions

    @property
    def text_notes(self) -> tuple[str, ...]:
        return self.evidence.notes() if self.evidence is not None else ()

    @property
    def matched_keywords(self) -> tuple[tuple[str, ...], ...]:
        """Per trace entry (same order), the keywords of that rule found in this complaint's words;
        ``()`` when none was. Worked out when asked (a trace shows them), not for every decision."""
        present = self.keywords_present
        if not present:
            return ()
        keyword_rules = self.outcome.keyword_rules
        if not keyword_rules:
            return ()
        found: list[tuple[str, ...]] = [()] * len(self.outcome.rules_fired)
        for i, rule_words in keyword_rules:
            found[i] = tuple(w for w in rule_words if w in present)
        return tuple(found) if any(found) else ()

    def to_dict(self, *, trace: bool = False, model_words: bool = True) -> dict[str, Any]:
        """The decision as JSON; ``trace``: with the rules that fired and the notes, whose model line
        names the n-grams that pushed the model unless ``model_words`` is False (the decision log's)."""
        o = self.outcome
        d: dict[str, Any] = {
            "complaint_id": self.complaint_id,
            "decision_id": self.decision_id,
            "category": o.category,
            "excluded": o.excluded,
            "exclusion": o.exclusion or None,
            "referred_to": o.referred_to or None,
            "existing_case_id": self.existing_case_id or None,
            "color": o.color,
            "tier": o.tier,
            "approach": o.approach or None,
            "owner_department": o.owner_department,
            "co_departments": list(o.co_departments),
            "stage": o.stage,
            "path": list(o.path),
            "statutory_route": o.statutory_route or None,
            "deadlines": {
                name: (self.deadlines[name].isoformat() if name in self.deadlines else None)
                for name in DEADLINE_NAMES
            },
            "guidance": o.guidance,
            "rule_pack": o.pack.to_dict(),
            "suggestions": [x.to_dict() for x in self.suggestions],
        }
        if self.matter is not None:
            d["matter"] = dict(self.matter)
            d["owning_point"] = dict(self.owning_point) if self.owning_point else None
        if trace:
            d["trace"] = [t.to_dict() for t in o.trace]
            for entry, words in zip(d["trace"], self.matched_keywords, strict=False):
                if words:
                    entry["matched_keywords"] = list(words)
            text = self.evidence.notes(model_words=model_words) if self.evidence is not None else ()
            d["notes"] = [*o.notes, *self.personal_notes, *self.matter_notes, *text]
        return d


_HOURS: dict[int, timedelta] = {}  # a pack's deadlines are few distinct whole hours


def deadlines_for(received_at: datetime, within: Mapping[str, int]) -> dict[str, datetime]:
    """Absolute deadlines, in the timezone the complaint was received in (local time by default)."""
    base = received_at if received_at.tzinfo else received_at.replace(tzinfo=LOCAL_TZ)
    out: dict[str, datetime] = {}
    for name, h in within.items():
        step = _HOURS.get(h)
        if step is None:
            step = timedelta(hours=h)
            if len(_HOURS) < 4096:
                _HOURS[h] = step
        out[name] = base + step
    return out
