"""INVALID_ARGUMENT in Chinese too: each field violation of the BadRequest carries a
``google.rpc.LocalizedMessage`` (locale zh-CN) beside its stable English description, and the status
carries one for its message — from the zh_CN catalog, whatever the server's language, with no personal
data. A real server on a real port (with a SQLite matter store for the events and listings), and every
description the validation makes read back to a template of the catalog."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message as _message
from google.protobuf import text_format
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from fenliu import i18n
from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.domain import model
from fenliu.domain.errors import ComplaintError, FieldViolation
from fenliu.serving import convert, localized
from fenliu.serving.config import ServeConfig
from fenliu.serving.matters import open_matters
from fenliu.serving.runtime import Triage
from fenliu.serving.server import invalid_complaint_status, invalid_request_status
from grpc_helpers import PACK, serving, stub_for

PERSON = {"name": "乌兰其其格", "id_number": "150626199001011234", "phone": "13947712345"}
T0 = 1_772_326_800  # 2026-03-01T09:00:00+08:00


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("localized")
    key = tmp / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    config = ServeConfig(
        store=f"sqlite:///{tmp / 'matters.db'}", store_key_file=str(key), store_deadline_ms=2000
    )
    matters = open_matters(config)
    assert matters is not None
    triage = Triage.from_path(PACK, run_tests=False, run_lint=False)
    with serving(triage, matters=matters) as (target, _), stub_for(target) as s:
        yield s
    matters.close()


def _unpack(st: status_pb2.Status, kind: type[_message.Message]) -> list[Any]:
    out = []
    for detail in st.details:
        if detail.Is(kind.DESCRIPTOR):
            m = kind()
            detail.Unpack(m)
            out.append(m)
    return out


def _status(err: grpc.RpcError) -> status_pb2.Status:
    st = rpc_status.from_call(err)
    assert st is not None
    return st


def _violations(st: status_pb2.Status) -> list[tuple[str, str, str, str]]:
    """(field, description, locale, localized message) of the one BadRequest's violations."""
    (bad,) = _unpack(st, error_details_pb2.BadRequest)
    return [
        (v.field, v.description, v.localized_message.locale, v.localized_message.message)
        for v in bad.field_violations
    ]


def _localized(st: status_pb2.Status) -> tuple[str, str]:
    (zh,) = _unpack(st, error_details_pb2.LocalizedMessage)
    return zh.locale, zh.message


def _no_personal_data(st: status_pb2.Status) -> None:
    everything = [st.message, st.SerializeToString().decode("utf-8", "replace")]
    for kind in (
        error_details_pb2.BadRequest,
        error_details_pb2.LocalizedMessage,
        error_details_pb2.ErrorInfo,
    ):
        everything += [text_format.MessageToString(m, as_utf8=True) for m in _unpack(st, kind)]
    text = "\n".join(everything)
    for value in PERSON.values():
        assert value not in text


def _two_bad_fields() -> pb.Complaint:
    """A complaint with its complainant's personal data, a phone in its text, and two bad fields."""
    return convert.complaint_to_proto(
        {
            "id": "loc-1",
            "text": "邻居家的排水沟对着我家院子，请打电话 13947712345 联系我。",
            "people_involved": -3,
            "region": {"banner_code": "150626", "township_code": "1506261"},
            "complainant": PERSON,
        }
    )


TWO = [
    (
        "complaint.people_involved",
        "must not be negative",
        "zh-CN",
        "不能是负数",
    ),
    (
        "complaint.region.township_code",
        "must be an administrative-division code of 3 or 9 digits",
        "zh-CN",
        "应为 3 位或 9 位数字的行政区划代码",
    ),
]


def test_a_bad_complaint_names_each_field_in_english_and_in_chinese(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Triage(pb.TriageRequest(complaint=_two_bad_fields()), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    st = _status(info.value)
    assert st.message == (
        "invalid complaint: 2 bad fields: complaint.people_involved, complaint.region.township_code"
    )
    assert _violations(st) == TWO
    assert _localized(st) == (
        "zh-CN",
        "诉求无效：2 个字段有误：complaint.people_involved, complaint.region.township_code",
    )
    (info_detail,) = _unpack(st, error_details_pb2.ErrorInfo)
    assert info_detail.reason == "INVALID_COMPLAINT"
    _no_personal_data(st)


def test_a_bad_complaint_in_a_stream_gets_the_same_status(stub: Any) -> None:
    requests = [pb.TriageStreamRequest(complaint=_two_bad_fields())]
    (answer,) = list(stub.TriageStream(iter(requests), timeout=30))
    assert answer.WhichOneof("result") == "error"
    assert _violations(answer.error) == TWO
    assert _localized(answer.error)[1].startswith("诉求无效：2 个字段有误：")
    _no_personal_data(answer.error)


def test_a_bad_event_a_bad_matter_id_and_a_bad_listing_are_in_chinese_too(stub: Any) -> None:
    event = pb.MatterEvent(
        idempotency_key="13947712345",  # shaped like a phone: refused, never echoed
        matter_id="m-" + "0" * 32,
        kind=pb.EVENT_KIND_EXTENDED,
        stage=pb.STAGE_MEDIATE,
        actor=pb.ReceivingPoint(code="150626100201", level=pb.TIER_VILLAGE),
        extension_days=40,
        reason="勘界",
    )
    event.occurred_at.FromSeconds(T0)
    with pytest.raises(grpc.RpcError) as info:
        stub.RecordEvent(pb.RecordEventRequest(event=event), timeout=10)
    st = _status(info.value)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(st) == [
        ("event.extension_days", "must be 1 to 30 days (§34)", "zh-CN", "应为 1 到 30 天（§34）"),
        (
            "event.idempotency_key",
            "must not hold anything shaped like an id number or a phone",
            "zh-CN",
            "不能含有形似身份证号或电话号码的内容",
        ),
    ]
    assert _localized(st) == ("zh-CN", "事件无效：2 个字段有误：event.extension_days, event.idempotency_key")
    _no_personal_data(st)

    with pytest.raises(grpc.RpcError) as info:
        stub.GetMatter(pb.GetMatterRequest(matter_id="13947712345"), timeout=10)
    st = _status(info.value)
    assert _violations(st) == [
        (
            "matter_id",
            "must be a matter id: m- and 32 hex digits",
            "zh-CN",
            "应为事项编号：m- 加 32 位十六进制数字",
        )
    ]
    assert _localized(st) == ("zh-CN", "请求无效：1 个字段有误：matter_id")
    _no_personal_data(st)

    with pytest.raises(grpc.RpcError) as info:
        stub.ListOverdue(pb.ListOverdueRequest(point="1506", limit=20_000, tier=99), timeout=10).next()
    st = _status(info.value)
    assert [(f, zh) for f, _d, _l, zh in _violations(st)] == [
        ("limit", "应为 1 到 10000（0 表示 10000）"),
        ("point", "应为 6 位（旗服务中心）、9 位（苏木镇服务站）或 12 位（嘎查村服务点）数字的行政区划代码"),
        ("tier", "未知的枚举编号；可用的有：TIER_VILLAGE, TIER_TOWNSHIP, TIER_BANNER"),
    ]
    assert _localized(st) == ("zh-CN", "请求无效：3 个字段有误：limit, point, tier")


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_the_servers_language_changes_neither_the_english_nor_the_chinese(lang: str) -> None:
    violations = [
        FieldViolation("people_involved", "must not be negative"),
        FieldViolation("id", "is required"),
    ]
    with i18n.language(lang):
        st = invalid_complaint_status(violations)
        events = invalid_request_status(
            [FieldViolation("event.kind", "only for EXTENDED")], "event", "INVALID_EVENT"
        )
    assert st.message == "invalid complaint: 2 bad fields: complaint.people_involved, complaint.id"
    assert _violations(st) == [
        ("complaint.people_involved", "must not be negative", "zh-CN", "不能是负数"),
        ("complaint.id", "is required", "zh-CN", "必须填写"),
    ]
    assert _localized(st) == ("zh-CN", "诉求无效：2 个字段有误：complaint.people_involved, complaint.id")
    assert _violations(events) == [("event.kind", "only for EXTENDED", "zh-CN", "只用于 EXTENDED")]


def test_a_description_without_a_template_is_still_chinese() -> None:
    (v,) = _violations(invalid_complaint_status([FieldViolation("title", "is something new")]))
    assert v[1] == "is something new"
    assert v[3] == "此字段有误：is something new"


# ----------------------------------------------------------------------------------------------------
# Every description the validation makes has a template


def _json_descriptions() -> list[str]:
    bad: list[Any] = [
        [],
        "x",
        {"id": "a", "text": "t", "colour": "RED", "13947712345": 1},
        {"id": 5, "text": "t" * 20_001, "title": "a\ud800", "category_hint": "a\x00"},
        {"text": "t", "channel": 3, "intent": "PETITON", "received_tier": "NOWHERE"},
        {"id": "a", "extreme_risk": "yes", "people_involved": "3", "repeat_visits": 2.5},
        {"id": "a", "text": "t", "people_involved": -1, "repeat_visits": 10**12},
        {"id": "a", "text": "t", "amount_yuan": "9", "people_involved": True},
        {"id": "a", "text": "t", "amount_yuan": math.inf},
        {"id": "a", "text": "t", "amount_yuan": -1.0},
        {"id": "a", "text": "t", "amount_yuan": 1e16},
        {"id": "a", "text": "t", "existing_case_id": "13947712345"},
        {"id": "a", "text": "t", "region": "150626"},
        {"id": "a", "text": "t", "region": {"street": "x", "banner_code": 150626, "township_code": "x" * 65}},
        {
            "id": "a",
            "text": "t",
            "region": {"banner_code": "15062", "township_code": "15", "village_code": "1"},
        },
        {"id": "a", "text": "t", "complainant": "张三"},
        {"id": "a", "text": "t", "complainant": {"age": 3, "name": 5, "phone": "1" * 200}},
        {"id": "a", "text": "t", "receiving_point": 5},
        {"id": "a", "text": "t", "receiving_point": {"where": 1, "code": 5}},
        {"id": "a", "text": "t", "receiving_point": {"code": "150626", "level": "COUNTY"}},
        {"id": "a", "text": "t", "receiving_point": {"code": "1506"}},
        {"id": "a", "text": "t", "receiving_point": {"code": "150626", "level": "VILLAGE"}},
        {"id": "a", "text": "t", "received_at": 5},
        {"id": "a", "text": "t", "received_at": "yesterday"},
        {"id": "a", "text": "t", "received_at": "9999-12-31T00:00:00Z"},
    ]
    out = []
    for data in bad:
        with pytest.raises(ComplaintError) as info:
            model.complaint_from_dict(data)
        out += [v.description for v in info.value.violations]
    return out


def _proto_descriptions() -> list[str]:
    c = pb.Complaint(id="x" * 200, text="t", people_involved=-1, amount_yuan=math.nan)
    for name in convert.COMPLAINT_ENUM_TYPES:
        setattr(c, name, 99)
    c.receiving_point.level = 99
    c.received_at.nanos = 2_000_000_000
    mirror = convert.complaint_dict_from_proto
    out = [v.description for v in mirror(c)[1]]
    with pytest.raises(ComplaintError) as info:
        convert.complaint_from_proto(c)
    out += [v.description for v in info.value.violations]
    return out


def _event_descriptions() -> list[str]:
    events = [
        pb.MatterEvent(),
        pb.MatterEvent(idempotency_key="k\x00", matter_id="m-1", decision_id="d" * 32, kind=99, stage=99),
        pb.MatterEvent(idempotency_key="k" * 500, decision_id="xyz", kind=pb.EVENT_KIND_EXTENDED),
        pb.MatterEvent(
            idempotency_key="k",
            matter_id="m-" + "0" * 32,
            kind=pb.EVENT_KIND_HANDED_ON,
            stage=pb.STAGE_MEDIATE,
            actor=pb.ReceivingPoint(level=pb.TIER_VILLAGE),
            handed_to_point=pb.ReceivingPoint(level=99),
            satisfaction=99,
            extension_days=3,
        ),
        pb.MatterEvent(
            idempotency_key="k",
            matter_id="m-" + "0" * 32,
            kind=pb.EVENT_KIND_HANDED_ON,
            stage=pb.STAGE_MEDIATE,
            actor=pb.ReceivingPoint(code="1506", level=pb.TIER_VILLAGE),
            handed_to_department="nowhere",
        ),
        pb.MatterEvent(
            idempotency_key="k",
            matter_id="m-" + "0" * 32,
            kind=pb.EVENT_KIND_FIRST_CONTACT,
            stage=pb.STAGE_MEDIATE,
            actor=pb.ReceivingPoint(code="150626"),
            handed_to_department="justice",
            handed_to_point=pb.ReceivingPoint(code="150626"),
            satisfaction=pb.SATISFACTION_SATISFIED,
        ),
        pb.MatterEvent(
            kind=pb.EVENT_KIND_EVALUATED, actor=pb.ReceivingPoint(code="150626", level=pb.TIER_VILLAGE)
        ),
    ]
    events[1].occurred_at.FromSeconds(100)
    out = []
    for e in events:
        with pytest.raises(ComplaintError) as info:
            convert.event_from_proto(e, departments=frozenset({"justice"}))
        out += [v.description for v in info.value.violations]
    listing = pb.ListOverdueRequest(color=99, tier=99, township_code="1", point="1", limit=-1)
    listing.as_of.FromSeconds(100)
    with pytest.raises(ComplaintError) as info:
        convert.overdue_filters(listing)
    out += [v.description for v in info.value.violations]
    return out


def test_every_description_of_the_validation_has_a_chinese_template() -> None:
    made = _json_descriptions() + _proto_descriptions() + _event_descriptions()
    constants = [model.CASE_ID_FORMAT, model.POINT_CODE_FORMAT, model.RECEIVED_AT_RANGE]
    constants += [model.region_format(name) for name in model.REGION_CODE_LENGTHS]
    descriptions = sorted(set(made + constants))
    assert len(descriptions) >= 60
    missing = [d for d in descriptions if localized.template_of(d) is None]
    assert not missing, f"add a template to fenliu/serving/localized.py (and its Chinese): {missing}"
    for d in descriptions:
        zh = localized.description_zh(d)
        assert zh != d and any("\u4e00" <= ch <= "\u9fff" for ch in zh), d
        for value in PERSON.values():
            assert value not in zh


def test_the_chinese_keeps_what_the_english_names() -> None:
    assert localized.description_zh("must be a string, not number") == "应为字符串，而不是数字"
    assert (
        localized.description_zh("unknown value; allowed: VISIT, LETTER; did you mean VISIT?")
        == "未知的取值；可用的有：VISIT, LETTER；是不是 VISIT？"
    )
    assert localized.description_zh("must have 12 digits at level VILLAGE") == "在 VILLAGE 层级应为 12 位数字"
    assert localized.description_zh("must not exceed 1e+15") == "不能超过 1e+15"
