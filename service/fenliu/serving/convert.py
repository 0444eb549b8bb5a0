"""Proto ↔ domain conversion for the gRPC transport. No rule logic lives here.

A complaint is validated by :func:`fenliu.domain.model.complaint_from_dict`: a proto complaint is turned into
the complaint's JSON form first (enum values without their prefix, ``received_at`` as an ISO string,
unset fields left out), then validated. Only what the JSON form cannot express is checked here:
strings that are not UTF-8, enum numbers this version does not know, timestamps out of range. A
complaint whose every field is plainly valid (the common case) is read straight from the message
instead, accepting and building exactly what that validation would.

A decision goes the other way from :meth:`fenliu.domain.model.Decision.to_dict`, so that gRPC and
``fenliu eval`` always say the same thing; :func:`decision_from_proto` gives that JSON form back.

State: the one module-level mutable object, ``_TEMPLATES``, is a bounded, locked cache of a pure
function (an outcome's proto part, keyed by what it shows); dropping it changes no answer.
"""

from __future__ import annotations

import math
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.domain import fields as F
from fenliu.domain.errors import ComplaintError, FieldViolation
from fenliu.domain.model import (
    DEADLINE_NAMES,
    DECIDED_FIELDS,
    EARLIEST_RECEIVED_AT,
    ENUM_DEFAULTS,
    LATEST_RECEIVED_AT,
    LOCAL_TZ,
    MAX_AMOUNT,
    MAX_CODE,
    MAX_COUNT,
    MAX_ID,
    MAX_PERSONAL,
    POINT_CODE_FORMAT,
    POINT_CODE_LENGTHS,
    UNSPECIFIED,
    Complainant,
    Complaint,
    Decision,
    Json,
    JsonValue,
    Outcome,
    case_id_ok,
    complaint_from_dict,
    parse_timestamp,
    point_code_ok,
    region_code_ok,
    region_format,
)
from fenliu.domain.model import _receiving_point as receiving_point_from_dict
from fenliu.domain.personal import mask

if TYPE_CHECKING:
    from google._upb._message import EnumDescriptor as UpbEnumDescriptor

    from fenliu.matter.events import Event, MatterState, OverdueItem, RecordedEvent
    from fenliu.serving.runtime import PackInfo, ReloadAttempt

#: An enum's descriptor, as the pure-Python or the upb protobuf runtime gives it.
AnyEnumDescriptor: TypeAlias = "EnumDescriptor | UpbEnumDescriptor"


def _enum_of(name: str) -> EnumTypeWrapper:
    """The proto enum that carries the complaint field ``name`` (where the field table says it goes)."""
    enum = pb.Complaint.DESCRIPTOR.fields_by_name[F.COMPLAINT_BY_NAME[name].proto].enum_type
    assert enum is not None, name
    wrapper: EnumTypeWrapper = getattr(pb, enum.name)
    return wrapper


#: Complaint field → the proto enum that carries it (the field table's enum fields).
COMPLAINT_ENUM_TYPES: Final[dict[str, EnumTypeWrapper]] = {
    name: _enum_of(name) for name in F.complaint_fields(kind="enum")
}
#: The proto Complaint's submessages of text fields, and the names within them (the field table's).
REGION_FIELDS: Final = F.complaint_fields(top="region")
COMPLAINANT_FIELDS: Final = F.complaint_fields(top="complainant")
_COMPLAINT_BOOLS: Final = F.complaint_fields(kind="bool")
#: Decision field → the proto enum that carries it.
DECISION_ENUM_TYPES: Final[dict[str, EnumTypeWrapper]] = {
    "color": pb.Color,
    "tier": pb.Tier,
    "approach": pb.Approach,
    "stage": pb.Stage,
    "path": pb.Stage,
}
#: What :func:`enum_name` gives for an enum number this version does not know.
UNKNOWN_ENUM: Final = "#unknown"

_PLACEHOLDER: Final = "x"  # stands for a string that was not UTF-8, so that the validator checks the rest


class ConversionError(ValueError):
    """A value from the engine that the proto cannot carry (a bug in a pack or in fenliu)."""


def _prefix(enum: AnyEnumDescriptor) -> str:
    zero = enum.values_by_number[0].name
    return zero[: -len("UNSPECIFIED")]


def enum_name(enum: AnyEnumDescriptor | None, number: int) -> str | None:
    """The contract's name of a proto enum number: ``None`` for 0, :data:`UNKNOWN_ENUM` if unknown."""
    if number == 0:
        return None
    assert enum is not None, "an enum field has its enum type"
    value = enum.values_by_number.get(number)
    if value is None:
        return UNKNOWN_ENUM
    return str(value.name[len(_prefix(enum)) :])


def enum_number(enum: AnyEnumDescriptor | None, name: str | None) -> Any:
    """The proto number of a contract enum name (``None`` or empty: 0): an ``int``, untyped
    because protoc's stubs give each enum field its own ``int`` subclass."""
    if not name:
        return 0
    assert enum is not None, "an enum field has its enum type"
    value = enum.values_by_name.get(_prefix(enum) + name) or enum.values_by_name.get(name)
    if value is None:
        raise ConversionError(f"{enum.full_name} has no value {name}")
    return int(value.number)


# ----------------------------------------------------------------------------------------------------
# Complaint: proto → JSON form → validated Complaint


_TYPE_MESSAGE: Final = FieldDescriptor.TYPE_MESSAGE
_TYPE_ENUM: Final = FieldDescriptor.TYPE_ENUM
_TYPE_STRING: Final = FieldDescriptor.TYPE_STRING
_TYPE_BYTES: Final = FieldDescriptor.TYPE_BYTES


def _string(msg: Message, name: str, path: str, bad: list[FieldViolation]) -> str | None:
    """A string field's value (None when empty). Reads bytes fields too (see server's byte mirror)."""
    value = getattr(msg, name)
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(FieldViolation(path, "is not valid UTF-8"))
            return _PLACEHOLDER
    return str(value) if value else None


def _allowed(enum: AnyEnumDescriptor | None) -> str:
    assert enum is not None, "an enum field has its enum type"
    return ", ".join(v.name for v in enum.values if v.number)


def _submessage(msg: Message, path: str, bad: list[FieldViolation]) -> dict[str, str]:
    out: dict[str, str] = {}
    for fd in msg.DESCRIPTOR.fields:
        if fd.type == _TYPE_ENUM:  # the receiving point's level
            name = enum_name(fd.enum_type, getattr(msg, fd.name))
            if name == UNKNOWN_ENUM:
                allowed = _allowed(fd.enum_type)
                bad.append(FieldViolation(f"{path}.{fd.name}", f"unknown enum number; allowed: {allowed}"))
            elif name is not None:
                out[fd.name] = name
            continue
        v = _string(msg, fd.name, f"{path}.{fd.name}", bad)
        if v is not None:
            out[fd.name] = v
    return out


def _timestamp(ts: timestamp_pb2.Timestamp) -> str | None:
    try:
        if not 0 <= ts.nanos <= 999_999_999:
            return None
        return str(ts.ToDatetime(tzinfo=UTC).isoformat())
    except (ValueError, OverflowError, OSError):
        return None


def complaint_dict_from_proto(msg: Message) -> tuple[Json, list[FieldViolation]]:
    """The JSON form of a proto complaint, and the violations the JSON form cannot express (strings
    that are not UTF-8, enum numbers this version does not know, timestamps out of range).

    ``msg`` is a ``fenliu.v1.Complaint``, or its byte mirror whose string fields are bytes. Only the
    fields that are set are read (``ListFields``): proto3 leaves the rest at their zero values, which
    the JSON form leaves out.
    """
    out: Json = {}
    bad: list[FieldViolation] = []
    for fd, value in msg.ListFields():
        name = fd.name
        ftype = fd.type
        if ftype == _TYPE_MESSAGE:
            if name == "received_at":
                iso = _timestamp(value)
                if iso is None:
                    bad.append(
                        FieldViolation(name, "is not a valid timestamp (seconds or nanos out of range)")
                    )
                else:
                    out[name] = iso
            else:
                out[name] = _submessage(value, name, bad)
        elif ftype == _TYPE_ENUM:
            enum_value = enum_name(fd.enum_type, value)
            if enum_value == UNKNOWN_ENUM:
                allowed = _allowed(fd.enum_type)
                bad.append(FieldViolation(name, f"unknown enum number; allowed: {allowed}"))
            elif enum_value is not None:
                out[name] = enum_value
        elif ftype in (_TYPE_STRING, _TYPE_BYTES):
            s = _string(msg, name, name, bad)
            if s is not None:
                out[name] = s
        elif (isinstance(value, float) and math.isnan(value)) or value:  # bool, int64, double
            out[name] = value
    return out, bad


_COMPLAINT_TYPE: Final = pb.Complaint
#: Complaint enum field → {proto number → contract name}, 0 (unset) → the complaint's default.
_ENUM_VALUES: Final[dict[str, dict[int, str]]] = {
    name: {
        0: ENUM_DEFAULTS.get(name, UNSPECIFIED),
        **{v.number: v.name[len(_prefix(enum.DESCRIPTOR)) :] for v in enum.DESCRIPTOR.values if v.number},
    }
    for name, enum in COMPLAINT_ENUM_TYPES.items()
}
#: The top-level text fields and their limits: id, title, text, category_hint, existing_case_id.
_STRINGS: Final = tuple(
    (f.name, f.limit) for f in F.COMPLAINT_TABLE if f.limit and not f.derived and "." not in f.name
)
_ENUMS: Final = tuple(_ENUM_VALUES.items())
_BOOLS: Final = operator.attrgetter(*_COMPLAINT_BOOLS)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: The range of received_at (:data:`fenliu.domain.model.EARLIEST_RECEIVED_AT` to ``LATEST_RECEIVED_AT``), in
#: whole seconds: any nanos keep a second of this range within it.
_SECONDS_MIN: Final = int((EARLIEST_RECEIVED_AT - _EPOCH).total_seconds())
_SECONDS_MAX: Final = int((LATEST_RECEIVED_AT.replace(microsecond=0) - _EPOCH).total_seconds())


def _plain_strings(msg: Message, names: tuple[str, ...], limit: int) -> dict[str, str] | None:
    """The string fields of a submessage that are not blank, or None if one is too long or holds a NUL."""
    out: dict[str, str] = {}
    for name in names:
        v = getattr(msg, name)
        if v:
            if len(v) > limit or "\x00" in v:
                return None
            if not v.isspace():  # whitespace only: absent
                out[name] = v
    return out


_TIER_NAMES: Final[dict[int, str]] = {
    0: "",
    **{v.number: v.name[len("TIER_") :] for v in pb.Tier.DESCRIPTOR.values if v.number},
}


def _plain_point(msg: pb.ReceivingPoint) -> dict[str, str] | None:
    """The receiving point as :func:`fenliu.domain.model.complaint_from_dict` builds it, or None when it
    is not plainly valid (the full validation then names what is wrong)."""
    code, level = msg.code, _TIER_NAMES.get(msg.level)
    if level is None or len(code) > MAX_CODE or "\x00" in code:
        return None
    code = code.strip()
    if code and not point_code_ok(code):
        return None
    if code and level and len(code) != POINT_CODE_LENGTHS[level]:
        return None
    point: dict[str, str] = {}
    if code:
        point["code"] = code
    if level:
        point["level"] = level
    elif code:
        point["level"] = next(lv for lv, n in POINT_CODE_LENGTHS.items() if n == len(code))
    return point


def _complaint_if_plainly_valid(msg: Message, now: datetime | None) -> Complaint | None:
    """The complaint, when every field is plainly valid; ``None`` sends it to the full validation.

    The common case, read straight from the message's fields: what it accepts, and the complaint it
    builds, are exactly those of :func:`complaint_from_dict` on the JSON form (``tests/test_grpc_fuzz.py``
    holds the two paths equal). Anything else — and every error message — is the full validation's.
    """
    if type(msg) is not _COMPLAINT_TYPE:  # the byte mirror of a message that was not UTF-8
        return None
    kw: dict[str, Any] = {}
    for name, limit in _STRINGS:
        v = getattr(msg, name)
        if len(v) > limit or "\x00" in v:
            return None
        kw[name] = "" if v.isspace() else v  # whitespace only: absent
    if not kw["id"].strip() or not (kw["text"].strip() or kw["category_hint"].strip()):
        return None
    case_id = kw["existing_case_id"].strip()
    if case_id and not case_id_ok(case_id):
        return None
    for name, numbers in _ENUMS:
        v = numbers.get(getattr(msg, name))
        if v is None:
            return None
        kw[name] = v
    people, repeats, amount = msg.people_involved, msg.repeat_visits, msg.amount_yuan
    if not (0 <= people <= MAX_COUNT and 0 <= repeats <= MAX_COUNT and 0.0 <= amount <= MAX_AMOUNT):
        return None  # negative, too large, or not a number
    kw["people_involved"] = people or 1  # proto3 cannot tell 0 from unset: 0 means "unknown" = 1
    kw["repeat_visits"] = repeats
    kw["amount_yuan"] = amount or 0.0
    if msg.HasField("region"):
        region = _plain_strings(msg.region, REGION_FIELDS, MAX_CODE)
        if region is None:
            return None
        for k, v in region.items():
            region[k] = code = v.strip()
            if code and not region_code_ok(k, code):
                return None
        kw["region"] = region
    if msg.HasField("receiving_point"):
        point = _plain_point(msg.receiving_point)
        if point is None:
            return None
        kw["receiving_point"] = point
    if msg.HasField("complainant"):
        person = _plain_strings(msg.complainant, COMPLAINANT_FIELDS, MAX_PERSONAL)
        if person is None:
            return None
        kw["complainant"] = Complainant(**person)
    if msg.HasField("received_at"):
        ts = msg.received_at
        seconds, nanos = ts.seconds, ts.nanos
        # Timestamp.ToDatetime(tzinfo=UTC), without its checks and time zone conversion: in the range
        # received_at may take, with nanos whole microseconds and rounded toward zero.
        if not (0 <= nanos <= 999_999_999 and _SECONDS_MIN <= seconds <= _SECONDS_MAX):
            return None
        kw["received_at"] = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    else:
        kw["received_at"] = (now or datetime.now(UTC)).astimezone(LOCAL_TZ)
        kw["received_at_given"] = False
    kw.update(zip(_COMPLAINT_BOOLS, _BOOLS(msg), strict=True))
    return Complaint(**kw)


def complaint_from_proto(msg: Message, *, now: datetime | None = None) -> Complaint:
    """Validate a proto complaint. Raises :class:`ComplaintError` naming every bad field."""
    plain = _complaint_if_plainly_valid(msg, now)
    return plain if plain is not None else _complaint_from_proto_fully(msg, now)


def _complaint_from_proto_fully(msg: Message, now: datetime | None) -> Complaint:
    """The full validation: the JSON form, validated by :func:`complaint_from_dict`."""
    data, bad = complaint_dict_from_proto(msg)
    try:
        complaint = complaint_from_dict(data, now=now)
    except ComplaintError as e:
        flagged = {v.field for v in bad}
        raise ComplaintError(bad + [v for v in e.violations if v.field not in flagged]) from None
    if bad:
        raise ComplaintError(bad)
    return complaint


def complaint_to_proto(data: Mapping[str, Any]) -> pb.Complaint:
    """A ``fenliu.v1.Complaint`` from the complaint's JSON form (for clients and tests).

    Expects well-typed values; unknown keys raise :class:`ConversionError`.
    """
    msg = pb.Complaint()
    fields = msg.DESCRIPTOR.fields_by_name
    for key, value in data.items():
        fd = fields.get(key)
        if fd is None:
            raise ConversionError(f"fenliu.v1.Complaint has no field {key}")
        if value is None:
            continue
        if key == "received_at":
            msg.received_at.FromDatetime(parse_timestamp(value) if isinstance(value, str) else value)
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            sub = getattr(msg, key)
            sub.SetInParent()
            for k, v in value.items():
                sfd = sub.DESCRIPTOR.fields_by_name.get(k)
                if sfd is not None and sfd.type == FieldDescriptor.TYPE_ENUM:
                    setattr(sub, k, enum_number(sfd.enum_type, v))
                else:
                    setattr(sub, k, v)
        elif fd.type == FieldDescriptor.TYPE_ENUM:
            setattr(msg, key, enum_number(fd.enum_type, value))
        else:
            setattr(msg, key, value)
    return msg


# ----------------------------------------------------------------------------------------------------
# Decision: Decision.to_dict → proto → JSON form


def _to_value(v: object) -> struct_pb2.Value:
    out = struct_pb2.Value()
    if v is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, int | float):
        out.number_value = float(v)
    elif isinstance(v, str):
        out.string_value = v
    elif isinstance(v, Mapping):
        out.struct_value.SetInParent()
        for k, item in v.items():
            out.struct_value.fields[str(k)].CopyFrom(_to_value(item))
    elif isinstance(v, Sequence | set | frozenset):
        out.list_value.SetInParent()
        for item in v:
            out.list_value.values.add().CopyFrom(_to_value(item))
    else:
        out.string_value = str(v)
    return out


def _from_value(v: struct_pb2.Value) -> JsonValue:
    kind = v.WhichOneof("kind")
    if kind == "bool_value":
        return v.bool_value
    if kind == "number_value":
        n = v.number_value
        return int(n) if math.isfinite(n) and n.is_integer() else n
    if kind == "string_value":
        return v.string_value
    if kind == "struct_value":
        return {k: _from_value(x) for k, x in v.struct_value.fields.items()}
    if kind == "list_value":
        return [_from_value(x) for x in v.list_value.values]
    return None


def _ts(value: str | datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(parse_timestamp(value) if isinstance(value, str) else value)
    return ts


def decision_dict_to_proto(d: Mapping[str, Any]) -> pb.Decision:
    """A ``fenliu.v1.Decision`` from the decision's JSON form (:meth:`Decision.to_dict`)."""
    try:
        msg = pb.Decision(
            complaint_id=d["complaint_id"],
            decision_id=d["decision_id"],
            category=d["category"],
            excluded=bool(d["excluded"]),
            exclusion=d.get("exclusion") or "",
            referred_to=d.get("referred_to") or "",
            existing_case_id=d.get("existing_case_id") or "",
            color=enum_number(pb.Color.DESCRIPTOR, d["color"]),
            tier=enum_number(pb.Tier.DESCRIPTOR, d["tier"]),
            approach=enum_number(pb.Approach.DESCRIPTOR, d.get("approach")),
            owner_department=d["owner_department"],
            co_departments=list(d.get("co_departments") or ()),
            stage=enum_number(pb.Stage.DESCRIPTOR, d["stage"]),
            path=[enum_number(pb.Stage.DESCRIPTOR, s) for s in d.get("path") or ()],
            statutory_route=d.get("statutory_route") or "",
            guidance=d.get("guidance") or "",
        )
        msg.deadlines.SetInParent()
        for name, when in (d.get("deadlines") or {}).items():
            if when is not None:
                getattr(msg.deadlines, name).CopyFrom(_ts(when))
        pack = d.get("rule_pack") or {}
        msg.rule_pack.name = pack.get("name", "")
        msg.rule_pack.revision = pack.get("revision", "")
        msg.rule_pack.digest = pack.get("digest", "")
        for t in d.get("trace") or ():
            entry = msg.trace.add(
                rule=t["rule"],
                stage=t.get("stage", ""),
                layer=t.get("layer", ""),
                source=t.get("source", ""),
                priority=int(t.get("priority", 0)),
                matched_keywords=list(t.get("matched_keywords") or ()),
                table_rows=list(t.get("table_rows") or ()),
            )
            for k, v in (t.get("set") or {}).items():
                entry.set[str(k)].CopyFrom(_to_value(v))
            for k, v in (t.get("overruled") or {}).items():
                entry.overruled[str(k)] = str(v)
        msg.notes.extend(str(n) for n in d.get("notes") or ())
        for sg in d.get("suggestions") or ():
            msg.suggestions.add(category=str(sg["category"]), score=float(sg["score"]))
        if d.get("matter") is not None:
            matter_to_proto(msg.matter, d["matter"])
        if d.get("owning_point"):
            _point_to_proto(msg.owning_point, d["owning_point"])
    except (KeyError, TypeError, ValueError) as e:  # ConversionError is a ValueError
        raise ConversionError(f"decision cannot be carried by fenliu.v1.Decision: {type(e).__name__}") from e
    return msg


def _point_to_proto(msg: pb.ReceivingPoint, point: Mapping[str, Any]) -> None:
    msg.SetInParent()
    msg.code = str(point.get("code") or "")
    msg.level = enum_number(pb.Tier.DESCRIPTOR, _tier(point.get("level")))


def _tier(level: object) -> str | None:
    return None if not level or level == UNSPECIFIED else str(level)


def matter_to_proto(msg: pb.Matter, m: Mapping[str, Any]) -> None:
    """Fill a ``fenliu.v1.Matter`` from the decision's ``matter`` part (its JSON form)."""
    msg.SetInParent()
    msg.history_available = bool(m.get("history_available"))
    msg.multi_door = bool(m.get("multi_door"))
    if not msg.history_available:
        return
    msg.matter_id = str(m.get("matter_id", ""))
    msg.new_matter = bool(m.get("new_matter"))
    for e in m.get("linked_by") or ():
        link = msg.linked_by.add(
            kind=str(e["kind"]), complaint_id=str(e["complaint_id"]), field=str(e.get("field", ""))
        )
        if e.get("similarity") is not None:
            link.similarity = float(e["similarity"])
    msg.prior_complaints = int(m.get("prior_complaints", 0))
    msg.channels.extend(str(x) for x in m.get("channels") or ())
    msg.points.extend(str(x) for x in m.get("points") or ())
    msg.levels.extend(str(x) for x in m.get("levels") or ())
    if m.get("first_receiver"):
        _point_to_proto(
            msg.first_receiver,
            {"code": m["first_receiver"].get("point"), "level": m["first_receiver"].get("level")},
        )
    if m.get("first_received_at"):
        msg.first_received_at.CopyFrom(_ts(m["first_received_at"]))
    msg.days_since_first = int(m.get("days_since_first", 0))
    msg.earlier_decision_ids.extend(str(x) for x in m.get("earlier_decision_ids") or ())


def matter_from_proto(msg: pb.Matter) -> Json:
    """The JSON form of a ``fenliu.v1.Matter``, as the decision's ``matter`` part gives it."""
    d: Json = {"history_available": msg.history_available}
    if msg.history_available:
        d.update(
            matter_id=msg.matter_id,
            new_matter=msg.new_matter,
            linked_by=[
                {
                    "kind": e.kind,
                    "complaint_id": e.complaint_id,
                    **({"field": e.field} if e.field else {}),
                    **({"similarity": e.similarity} if e.HasField("similarity") else {}),
                }
                for e in msg.linked_by
            ],
            prior_complaints=msg.prior_complaints,
            channels=list(msg.channels),
            points=list(msg.points),
            levels=list(msg.levels),
            days_since_first=msg.days_since_first,
            first_receiver={
                "point": msg.first_receiver.code,
                "level": enum_name(pb.Tier.DESCRIPTOR, msg.first_receiver.level) or UNSPECIFIED,
            },
            first_received_at=str(msg.first_received_at.ToDatetime(tzinfo=UTC).isoformat()),
            earlier_decision_ids=list(msg.earlier_decision_ids),
        )
    d["multi_door"] = msg.multi_door
    return d


# A decision is an Outcome (memoized per class of input, so the same object recurs) plus ids and clock
# times. The proto of an outcome is built and serialized once; a decision copies the message and sets
# the per-complaint fields, or appends those fields, serialized, to the template's bytes.
_TEMPLATES: OrderedDict[Hashable, tuple[Outcome | None, pb.Decision, bytes]] = OrderedDict()
_TEMPLATES_MAX: Final = 2048
_TEMPLATES_LOCK: Final = threading.Lock()


#: What a decision without its trace shows of its outcome (the deadlines are the complaint's own).
_VISIBLE: Final = operator.attrgetter(*[f for f in DECIDED_FIELDS if f != "deadlines"], "guidance", "pack")


def _template(decision: Decision, trace: bool) -> tuple[pb.Decision, bytes]:
    """The outcome's part of the decision: as a message, and serialized."""
    outcome = decision.outcome
    # Without the trace, a decision shows only these fields of its outcome: outcomes that differ only in
    # how they were reached share one template. With the trace, each outcome has its own.
    key: Hashable = (id(outcome), True) if trace else _VISIBLE(outcome)
    with _TEMPLATES_LOCK:
        hit = _TEMPLATES.get(key)
        if hit is not None and (not trace or hit[0] is outcome):
            _TEMPLATES.move_to_end(key)
            return hit[1], hit[2]
    d = decision.to_dict(trace=trace)
    d["complaint_id"] = d["decision_id"] = d["existing_case_id"] = ""
    d["deadlines"] = {}
    d["suggestions"] = []  # the complaint's own, as are the text step's notes and its matter
    d.pop("matter", None)
    d.pop("owning_point", None)
    if "notes" in d:
        d["notes"] = list(outcome.notes)
    for entry in d.get("trace") or ():  # which keywords matched belongs to each complaint, not the outcome
        entry.pop("matched_keywords", None)
    template = decision_dict_to_proto(d)
    wire = template.SerializeToString()
    with _TEMPLATES_LOCK:
        # With the trace, holding the outcome keeps its id from being reused; without, the key is what
        # the template shows, and holding no outcome keeps no replaced pack's memories alive.
        _TEMPLATES[key] = (outcome if trace else None, template, wire)
        if len(_TEMPLATES) > _TEMPLATES_MAX:
            _TEMPLATES.popitem(last=False)
    return template, wire


def _set_timestamp(ts: timestamp_pb2.Timestamp, when: datetime) -> None:
    seconds = when.timestamp()
    whole = math.floor(seconds)
    ts.seconds = whole
    ts.nanos = when.microsecond * 1000


def _own_fields(msg: pb.Decision, decision: Decision) -> pb.Decision:
    """Set the fields that are the complaint's own, not its outcome's."""
    msg.complaint_id = decision.complaint_id
    msg.decision_id = decision.decision_id
    if decision.existing_case_id:
        msg.existing_case_id = decision.existing_case_id
    deadlines = msg.deadlines
    for name, when in decision.deadlines.items():
        _set_timestamp(getattr(deadlines, name), when)
    for sg in decision.suggestions:
        msg.suggestions.add(category=sg.category, score=sg.score)
    if decision.matter is not None:
        matter_to_proto(msg.matter, decision.matter)
    if decision.owning_point:
        _point_to_proto(msg.owning_point, decision.owning_point)
    return msg


def decision_to_proto(decision: Decision, *, trace: bool = False) -> pb.Decision:
    """A ``fenliu.v1.Decision``; the trace and notes only when ``trace`` is true."""
    msg = pb.Decision()
    msg.CopyFrom(_template(decision, trace)[0])
    _own_fields(msg, decision)
    if trace:
        for entry, words in zip(msg.trace, decision.matched_keywords, strict=False):
            if words:
                entry.matched_keywords.extend(words)
        msg.notes.extend(decision.personal_notes)
        msg.notes.extend(decision.matter_notes)
        msg.notes.extend(decision.text_notes)
    return msg


def decision_to_wire(decision: Decision, *, trace: bool = False) -> bytes:
    """:func:`decision_to_proto`, serialized.

    Without the trace, the outcome's part is serialized once per template and the complaint's own fields
    are appended: protobuf parses two serialized messages one after the other as one message, the later
    fields merged into the earlier ones. With the trace, each entry's matched keywords belong inside
    the outcome's entries, so the whole message is built and serialized.
    """
    if trace:
        return bytes(decision_to_proto(decision, trace=True).SerializeToString())
    own: bytes = _own_fields(pb.Decision(), decision).SerializeToString()
    return _template(decision, False)[1] + own


def _iso(ts: timestamp_pb2.Timestamp) -> str:
    return str(ts.ToDatetime(tzinfo=UTC).astimezone(LOCAL_TZ).isoformat())


def decision_from_proto(msg: pb.Decision, *, trace: bool | None = None) -> Json:
    """The JSON form of a proto decision, as :meth:`Decision.to_dict` gives it.

    Deadlines come back in banner local time (+08:00): the same instants, maybe another offset.
    ``trace`` and ``notes`` are present when ``trace`` is true, or, when it is ``None``, when the
    decision carries any.
    """
    d: Json = {
        "complaint_id": msg.complaint_id,
        "decision_id": msg.decision_id,
        "category": msg.category,
        "excluded": msg.excluded,
        "exclusion": msg.exclusion or None,
        "referred_to": msg.referred_to or None,
        "existing_case_id": msg.existing_case_id or None,
        "color": enum_name(pb.Color.DESCRIPTOR, msg.color),
        "tier": enum_name(pb.Tier.DESCRIPTOR, msg.tier),
        "approach": enum_name(pb.Approach.DESCRIPTOR, msg.approach),
        "owner_department": msg.owner_department,
        "co_departments": list(msg.co_departments),
        "stage": enum_name(pb.Stage.DESCRIPTOR, msg.stage),
        "path": [enum_name(pb.Stage.DESCRIPTOR, s) for s in msg.path],
        "statutory_route": msg.statutory_route or None,
        "deadlines": {
            name: (_iso(getattr(msg.deadlines, name)) if msg.deadlines.HasField(name) else None)
            for name in DEADLINE_NAMES
        },
        "guidance": msg.guidance,
        "rule_pack": {
            "name": msg.rule_pack.name,
            "revision": msg.rule_pack.revision,
            "digest": msg.rule_pack.digest,
        },
        "suggestions": [{"category": sg.category, "score": sg.score} for sg in msg.suggestions],
    }
    if msg.HasField("matter"):
        d["matter"] = matter_from_proto(msg.matter)
        d["owning_point"] = (
            {
                "code": msg.owning_point.code,
                "level": enum_name(pb.Tier.DESCRIPTOR, msg.owning_point.level) or UNSPECIFIED,
            }
            if msg.HasField("owning_point")
            else None
        )
    if trace or (trace is None and (msg.trace or msg.notes)):
        entries: list[Json] = []
        for t in msg.trace:
            e: Json = {
                "rule": t.rule,
                "stage": t.stage,
                "layer": t.layer,
                "source": t.source,
                "priority": t.priority,
                "set": {k: _from_value(v) for k, v in t.set.items()},
            }
            if t.overruled:
                e["overruled"] = dict(t.overruled)
            if t.matched_keywords:
                e["matched_keywords"] = list(t.matched_keywords)
            if t.table_rows:
                e["table_rows"] = list(t.table_rows)
            entries.append(e)
        d["trace"] = entries
        d["notes"] = list(msg.notes)
    return d


def matter_to_response(matter_id: str, rows: Sequence[Mapping[str, Any]]) -> pb.GetMatterResponse:
    """A ``GetMatterResponse`` from the store's rows (``MatterStore.matter``): no personal data in them."""
    resp = pb.GetMatterResponse(matter_id=matter_id)
    for r in rows:
        c = resp.complaints.add(
            complaint_id=str(r["complaint_id"]),
            channel=str(r.get("channel") or ""),
            point=str(r.get("point") or ""),
            level=str(r.get("level") or ""),
            decision_id=str(r.get("decision_id") or ""),
        )
        c.received_at.FromSeconds(int(r["received_at"]))
    return resp


def matter_from_response(resp: pb.GetMatterResponse) -> Json:
    """The JSON form of a ``GetMatterResponse``."""
    return {
        "matter_id": resp.matter_id,
        "complaints": [
            {
                "complaint_id": c.complaint_id,
                "received_at": str(c.received_at.ToDatetime(tzinfo=UTC).isoformat()),
                "channel": c.channel,
                "point": c.point,
                "level": c.level,
                "decision_id": c.decision_id,
            }
            for c in resp.complaints
        ],
        "events": [json_format.MessageToDict(e, preserving_proto_field_name=True) for e in resp.events],
        "state": (
            json_format.MessageToDict(resp.state, preserving_proto_field_name=True)
            if resp.HasField("state")
            else None
        ),
    }


_RELOAD_OUTCOMES: Final = {
    "LOADED": pb.RELOAD_OUTCOME_LOADED,
    "REFUSED": pb.RELOAD_OUTCOME_REFUSED,
    "UNCHANGED": pb.RELOAD_OUTCOME_UNCHANGED,
}


def rule_pack_to_proto(info: PackInfo, attempt: ReloadAttempt | None = None) -> pb.GetRulePackResponse:
    """A ``GetRulePackResponse`` from the engine's ``PackInfo``."""
    resp = pb.GetRulePackResponse(
        name=info.name,
        revision=info.revision,
        digest=info.digest,
        rule_count=int(info.rule_count),
        categories=[pb.Category(code=code, name=name) for code, name in info.categories],
    )
    loaded_at: datetime = info.loaded_at
    resp.loaded_at.FromDatetime(loaded_at if loaded_at.tzinfo else loaded_at.replace(tzinfo=UTC))
    if attempt is not None:
        last = resp.last_reload
        last.at.FromDatetime(attempt.at)
        last.outcome = _RELOAD_OUTCOMES[attempt.outcome]
        if attempt.pack is not None:
            last.pack.CopyFrom(
                pb.RulePackId(
                    name=attempt.pack.name, revision=attempt.pack.revision, digest=attempt.pack.digest
                )
            )
        last.problems.extend(attempt.problems)
        last.changed_files.extend(attempt.changed_files)
        last.warnings.extend(attempt.warnings)
    return resp


# ----------------------------------------------------------------------------------------------------
# Events on a matter (RecordEvent, RecordEvents, ListOverdue, GetMatter's events and state)

#: A matter id: ``m-`` and 32 hex digits.
MATTER_ID: Final = re.compile(r"m-[0-9a-f]{32}\Z")
#: A decision id: 32 hex digits (a UUID's).
DECISION_ID: Final = re.compile(r"[0-9a-f]{32}\Z")
#: The longest idempotency key and reason an event may carry.
MAX_IDEMPOTENCY_KEY: Final = 128
MAX_REASON: Final = 1000
#: An event may not happen before this, nor later than this long after the server's clock.
EARLIEST_EVENT: Final = datetime(2000, 1, 1, tzinfo=UTC)
EVENT_CLOCK_SKEW: Final = timedelta(days=1)
#: Kinds that take a satisfaction, and kinds that take a reason (the only ones that may).
_SATISFACTION_KINDS: Final = frozenset({"EVALUATED", "REVISITED"})


def _event_string(msg: Message, name: str, path: str, limit: int, bad: list[FieldViolation]) -> str:
    """A string field of an event, stripped ("" when blank); a violation when too long or holding a
    NUL (never quoting the value)."""
    v = str(getattr(msg, name))
    if len(v) > limit:
        bad.append(FieldViolation(path, f"must be at most {limit} characters"))
        return ""
    if "\x00" in v:
        bad.append(FieldViolation(path, "must not contain NUL"))
        return ""
    return v.strip()


def _event_point(
    msg: pb.ReceivingPoint, path: str, bad: list[FieldViolation], *, required: bool
) -> dict[str, str]:
    """A receiving point's code and level, validated as a complaint's receiving point is."""
    if not msg.code.strip():
        if required:
            bad.append(FieldViolation(f"{path}.code", "required: the point's code (6, 9 or 12 digits)"))
        elif msg.level:
            bad.append(FieldViolation(f"{path}.code", "required with a level"))
        return {}
    level = enum_name(pb.Tier.DESCRIPTOR, msg.level)
    given: dict[object, object] = {"code": msg.code}
    if level == UNKNOWN_ENUM:
        bad.append(
            FieldViolation(f"{path}.level", "unknown enum number; allowed: " + _allowed(pb.Tier.DESCRIPTOR))
        )
        return {}
    if level:
        given["level"] = level
    inner: list[FieldViolation] = []
    point = receiving_point_from_dict(given, inner)
    for v in inner:
        bad.append(FieldViolation(path + v.field[len("receiving_point") :], v.description))
    return dict(point) if point else {}


def event_from_proto(
    msg: pb.MatterEvent, *, departments: frozenset[str] | None = None, now: datetime | None = None
) -> Event:
    """A validated :class:`~fenliu.matter.events.Event`, or :class:`ComplaintError` naming every bad
    field (as ``event.<field>``). ``reason`` comes back masked of anything shaped like an id number or
    a phone. Fields that do not belong to the event's kind are rejected. ``departments``: the pack's
    department codes (``None``: not checked, e.g. before a pack is loaded)."""
    from fenliu.matter.events import MAX_EXTENSION_DAYS, Event  # the matter store only when it is used

    bad: list[FieldViolation] = []
    key = _event_string(msg, "idempotency_key", "idempotency_key", MAX_IDEMPOTENCY_KEY, bad)
    if not key and not any(v.field == "idempotency_key" for v in bad):
        bad.append(FieldViolation("idempotency_key", "required: the caller's key for this event"))
    matter_id = _event_string(msg, "matter_id", "matter_id", MAX_ID, bad)
    decision_id = _event_string(msg, "decision_id", "decision_id", MAX_ID, bad)
    if matter_id and decision_id:
        bad.append(FieldViolation("decision_id", "give matter_id or decision_id, not both"))
    elif not matter_id and not decision_id and not any(v.field in ("matter_id", "decision_id") for v in bad):
        bad.append(FieldViolation("matter_id", "required: matter_id or decision_id"))
    if matter_id and not MATTER_ID.match(matter_id):
        bad.append(FieldViolation("matter_id", "must be a matter id: m- and 32 hex digits"))
    if decision_id and not matter_id and not DECISION_ID.match(decision_id):
        bad.append(FieldViolation("decision_id", "must be a decision id: 32 hex digits"))
    if key and mask(key) != key:
        bad.append(
            FieldViolation("idempotency_key", "must not hold anything shaped like an id number or a phone")
        )
    kind = enum_name(pb.EventKind.DESCRIPTOR, msg.kind) or ""
    if not kind:
        bad.append(FieldViolation("kind", "required; allowed: " + _allowed(pb.EventKind.DESCRIPTOR)))
    elif kind == UNKNOWN_ENUM:
        bad.append(
            FieldViolation("kind", "unknown enum number; allowed: " + _allowed(pb.EventKind.DESCRIPTOR))
        )
    stage = enum_name(pb.Stage.DESCRIPTOR, msg.stage) or ""
    if not stage:
        bad.append(FieldViolation("stage", "required; allowed: " + _allowed(pb.Stage.DESCRIPTOR)))
    elif stage == UNKNOWN_ENUM:
        bad.append(FieldViolation("stage", "unknown enum number; allowed: " + _allowed(pb.Stage.DESCRIPTOR)))
    occurred_at = 0
    if not msg.HasField("occurred_at"):
        bad.append(FieldViolation("occurred_at", "required: when the event happened"))
    else:
        latest = (now or datetime.now(UTC)) + EVENT_CLOCK_SKEW
        iso = _timestamp(msg.occurred_at)
        when = datetime.fromisoformat(iso) if iso is not None else None
        if when is None or not EARLIEST_EVENT <= when <= latest:
            bad.append(FieldViolation("occurred_at", "must be after 2000-01-01 and not in the future"))
        else:
            occurred_at = int(msg.occurred_at.seconds)
    actor = _event_point(msg.actor, "actor", bad, required=True)
    reason = _event_string(msg, "reason", "reason", MAX_REASON, bad)
    days = int(msg.extension_days)
    department = _event_string(msg, "handed_to_department", "handed_to_department", MAX_CODE, bad)
    handed_point = _event_point(msg.handed_to_point, "handed_to_point", bad, required=False)
    satisfaction = enum_name(pb.Satisfaction.DESCRIPTOR, msg.satisfaction) or ""
    if satisfaction == UNKNOWN_ENUM:
        bad.append(
            FieldViolation(
                "satisfaction", "unknown enum number; allowed: " + _allowed(pb.Satisfaction.DESCRIPTOR)
            )
        )
    # What each kind needs, and what it may not carry.
    if kind == "EXTENDED":
        if not 1 <= days <= MAX_EXTENSION_DAYS:
            bad.append(FieldViolation("extension_days", f"must be 1 to {MAX_EXTENSION_DAYS} days (§34)"))
        if not reason:
            bad.append(FieldViolation("reason", "required for EXTENDED: why the handling is extended"))
    elif days:
        bad.append(FieldViolation("extension_days", "only for EXTENDED"))
    if kind == "HANDED_ON":
        if not department and not handed_point:
            bad.append(FieldViolation("handed_to_department", "required for HANDED_ON (or handed_to_point)"))
        elif department and departments is not None and department not in departments:
            bad.append(FieldViolation("handed_to_department", "unknown department of the rule pack"))
    else:
        if department:
            bad.append(FieldViolation("handed_to_department", "only for HANDED_ON"))
        if msg.handed_to_point.code or msg.handed_to_point.level:
            bad.append(FieldViolation("handed_to_point", "only for HANDED_ON"))
    if kind == "EVALUATED" and not satisfaction:
        bad.append(FieldViolation("satisfaction", "required for EVALUATED"))
    elif satisfaction and kind not in _SATISFACTION_KINDS and kind:
        bad.append(FieldViolation("satisfaction", "only for EVALUATED and REVISITED"))
    if bad:
        raise ComplaintError(bad)
    return Event(
        idempotency_key=key,
        kind=kind,
        stage=stage,
        occurred_at=occurred_at,
        actor_point=actor["code"],
        actor_level=actor.get("level", ""),
        matter_id=matter_id,
        decision_id=decision_id,
        reason=mask(reason),
        extension_days=days,
        handed_to_department=department,
        handed_to_point=handed_point.get("code", ""),
        handed_to_level=handed_point.get("level", ""),
        satisfaction=satisfaction,
    )


def _set_seconds(ts: timestamp_pb2.Timestamp, seconds: int) -> None:
    ts.FromSeconds(int(seconds))


def _deadlines_to_proto(msg: pb.Deadlines, values: Mapping[str, int]) -> None:
    msg.SetInParent()
    for name in DEADLINE_NAMES:
        if name in values:
            _set_seconds(getattr(msg, name), values[name])


def state_to_proto(msg: pb.MatterState, s: MatterState) -> None:
    """Fill a ``fenliu.v1.MatterState`` from the store's :class:`~fenliu.matter.events.MatterState`."""
    msg.SetInParent()
    msg.matter_id = s.matter_id
    msg.status = s.status
    msg.stage = enum_number(pb.Stage.DESCRIPTOR, s.stage)
    msg.last_outcome = enum_number(pb.Outcome.DESCRIPTOR, s.last_outcome)
    msg.last_outcome_stage = enum_number(pb.Stage.DESCRIPTOR, s.last_outcome_stage)
    msg.owner_department = s.owner_department
    if s.first_point:
        _point_to_proto(msg.first_receiver, {"code": s.first_point, "level": s.first_level})
    msg.color = enum_number(pb.Color.DESCRIPTOR, s.colour)
    msg.tier = enum_number(pb.Tier.DESCRIPTOR, _tier(s.tier))
    msg.township_code = s.township
    _deadlines_to_proto(msg.deadlines, s.deadlines)
    _deadlines_to_proto(msg.met, s.met)
    msg.extension_days = s.extension_days
    msg.resolved_level = enum_number(pb.Tier.DESCRIPTOR, _tier(s.resolved_level))
    msg.satisfaction = enum_number(pb.Satisfaction.DESCRIPTOR, s.satisfaction)


def event_to_proto(msg: pb.MatterEvent, e: Event) -> None:
    msg.SetInParent()
    msg.idempotency_key = e.idempotency_key
    msg.matter_id = e.matter_id
    msg.decision_id = e.decision_id
    msg.kind = enum_number(pb.EventKind.DESCRIPTOR, e.kind)
    msg.stage = enum_number(pb.Stage.DESCRIPTOR, e.stage)
    _set_seconds(msg.occurred_at, e.occurred_at)
    _point_to_proto(msg.actor, {"code": e.actor_point, "level": e.actor_level})
    msg.reason = e.reason
    msg.extension_days = e.extension_days
    msg.handed_to_department = e.handed_to_department
    if e.handed_to_point:
        _point_to_proto(msg.handed_to_point, {"code": e.handed_to_point, "level": e.handed_to_level})
    msg.satisfaction = enum_number(pb.Satisfaction.DESCRIPTOR, e.satisfaction)


def recorded_to_proto(msg: pb.RecordedEvent, r: RecordedEvent) -> None:
    msg.event_id = r.event_id
    event_to_proto(msg.event, r.event)
    _set_seconds(msg.recorded_at, r.recorded_at)


def record_response(recorded: RecordedEvent, stored: bool, state: MatterState) -> pb.RecordEventResponse:
    resp = pb.RecordEventResponse(event_id=recorded.event_id, recorded=stored)
    state_to_proto(resp.state, state)
    return resp


def overdue_to_proto(item: OverdueItem) -> pb.OverdueMatter:
    msg = pb.OverdueMatter()
    state_to_proto(msg.state, item.state)
    for name, due, past in item.overdue:
        d = msg.overdue.add(deadline=name, seconds_past=int(past))
        _set_seconds(d.due, due)
    return msg


def matter_events_to_response(
    resp: pb.GetMatterResponse, events: Sequence[RecordedEvent], state: MatterState | None
) -> None:
    """Add a matter's events and state to its ``GetMatterResponse``."""
    for r in events:
        recorded_to_proto(resp.events.add(), r)
    if state is not None:
        state_to_proto(resp.state, state)


def overdue_filters(msg: pb.ListOverdueRequest, *, now: datetime | None = None) -> tuple[int, dict[str, Any]]:
    """(as_of, the store's keyword filters) of a ``ListOverdueRequest``, or :class:`ComplaintError`
    naming every bad field. ``as_of`` defaults to now; ``limit`` to and at most 10,000."""
    bad: list[FieldViolation] = []
    as_of = int((now or datetime.now(UTC)).timestamp())
    if msg.HasField("as_of"):
        iso = _timestamp(msg.as_of)
        if iso is None or datetime.fromisoformat(iso) < EARLIEST_EVENT:
            bad.append(FieldViolation("as_of", "must be a time after 2000-01-01"))
        else:
            as_of = int(msg.as_of.seconds)
    colour = enum_name(pb.Color.DESCRIPTOR, msg.color) or ""
    tier = enum_name(pb.Tier.DESCRIPTOR, msg.tier) or ""
    for name, value, enum in (("color", colour, pb.Color.DESCRIPTOR), ("tier", tier, pb.Tier.DESCRIPTOR)):
        if value == UNKNOWN_ENUM:
            bad.append(FieldViolation(name, "unknown enum number; allowed: " + _allowed(enum)))
    township = _event_string(msg, "township_code", "township_code", MAX_CODE, bad)
    if township and not region_code_ok("township_code", township):
        bad.append(FieldViolation("township_code", region_format("township_code")))
    owner = _event_string(msg, "owner_department", "owner_department", MAX_CODE, bad)
    point = _event_string(msg, "point", "point", MAX_CODE, bad)
    if point and not point_code_ok(point):
        bad.append(FieldViolation("point", POINT_CODE_FORMAT))
    limit = int(msg.limit) or MAX_OVERDUE
    if not 0 < limit <= MAX_OVERDUE:
        bad.append(FieldViolation("limit", f"must be 1 to {MAX_OVERDUE} (0: {MAX_OVERDUE})"))
    if bad:
        raise ComplaintError(bad)
    return as_of, {
        "colour": colour,
        "tier": tier,
        "township": township,
        "owner_department": owner,
        "point": point,
        "limit": limit,
    }


#: The most matters one ListOverdue answers (and its default).
MAX_OVERDUE: Final = 10_000
