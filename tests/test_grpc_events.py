"""Events on a matter over gRPC: a real server on a real port with a real matter store (SQLite, PostgreSQL).

RecordEvent (every kind, repeats, out of order, NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT naming
every bad field), RecordEvents, the matter moving on by itself after a failed stage (and the sent later
stage winning), a handed-on matter's new owner, ListOverdue, GetMatter's events and state, and no
personal data in answers, errors or logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.serving import convert
from fenliu.serving.config import ServeConfig
from fenliu.serving.matters import Matters, open_matters
from fenliu.serving.runtime import Triage
from grpc_helpers import PACK, bad_fields, error_of, serving, stub_for
from matter_helpers import GRASS, GRASS_AGAIN, TWP, VIL

PHONE = "13947712345"
ID_NUMBER = "150627198001010026"
BANNER = "150626"
OTHER_TWP = "150626105"
WAGES = "老板拖欠我们八个人三个月的工资一共四万多元，多次讨要都不给，请帮忙追讨。"
DRAIN = "邻居家的排水沟对着我家院子，一下雨院子里全是水，多次协商无果。"
DAY = 86_400


def _complaint(cid: str, text: str, phone: str = PHONE, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": cid,
        "text": text,
        "channel": "VISIT",
        "received_tier": "VILLAGE",
        "region": {"banner_code": BANNER, "township_code": TWP, "village_code": VIL},
        "receiving_point": {"code": VIL, "level": "VILLAGE"},
        "received_at": "2026-03-01T09:00:00+08:00",
        "complainant": {"name": "张三", "phone": phone},
    }
    d.update(kw)
    return d


def _triage(stub: Any, data: dict[str, Any]) -> dict[str, Any]:
    req = pb.TriageRequest(complaint=convert.complaint_to_proto(data), include_trace=True)
    return convert.decision_from_proto(stub.Triage(req, timeout=30).decision)


def _ts(seconds: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromSeconds(seconds)
    return ts


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


T0 = _epoch("2026-03-01T09:00:00+08:00")


def _event(key: str, kind: str, stage: str, at: int, **kw: Any) -> pb.MatterEvent:
    e = pb.MatterEvent(
        idempotency_key=key,
        kind=getattr(pb, f"EVENT_KIND_{kind}"),
        stage=getattr(pb, f"STAGE_{stage}"),
        occurred_at=_ts(at),
        actor=pb.ReceivingPoint(code=VIL, level=pb.TIER_VILLAGE),
    )
    for k, v in kw.items():
        if k == "satisfaction":
            e.satisfaction = getattr(pb, f"SATISFACTION_{v}")
        elif k == "handed_to_point":
            e.handed_to_point.CopyFrom(v)
        else:
            setattr(e, k, v)
    return e


def _record(stub: Any, event: pb.MatterEvent) -> pb.RecordEventResponse:
    resp: pb.RecordEventResponse = stub.RecordEvent(pb.RecordEventRequest(event=event), timeout=10)
    return resp


def _error(stub: Any, event: pb.MatterEvent) -> tuple[dict[str, Any], grpc.RpcError]:
    with pytest.raises(grpc.RpcError) as info:
        _record(stub, event)
    return error_of(info.value), info.value


def _matter(stub: Any, matter_id: str) -> pb.GetMatterResponse:
    resp: pb.GetMatterResponse = stub.GetMatter(pb.GetMatterRequest(matter_id=matter_id), timeout=10)
    return resp


def _kinds(resp: pb.GetMatterResponse) -> list[str]:
    return [pb.EventKind.Name(r.event.kind)[len("EVENT_KIND_") :] for r in resp.events]


@pytest.fixture(scope="module")
def triage() -> Triage:
    return Triage.from_path(PACK)


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, triage: Triage, tmp_path: Path) -> Iterator[Any]:
    """A started server with a matter store: a SQLite file, and a database of the tests' PostgreSQL."""
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'matters.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_database()
    # A generous deadline: on a busy machine a recognition must not come back "history unavailable".
    config = ServeConfig(store=url, store_key_file=str(key), store_deadline_ms=2000)
    matters: Matters | None = open_matters(config)
    assert matters is not None
    with serving(triage, matters=matters) as (target, _), stub_for(target) as stub:
        stub.target = target  # for the tests that call with raw bytes
        yield stub
    matters.close()


def test_events_every_kind_is_recorded_and_get_matter_shows_events_and_state(served: Any) -> None:
    stub = served
    first = _triage(stub, _complaint("k-1", GRASS))
    matter_id, stage = first["matter"]["matter_id"], first["stage"]
    steps = [
        _event("k-e1", "FIRST_CONTACT", stage, T0 + 3600, decision_id=first["decision_id"]),
        _event("k-e2", "PLAN_MADE", stage, T0 + 2 * 3600, matter_id=matter_id),
        _event("k-e3", "ACCEPTED", stage, T0 + DAY, matter_id=matter_id),
        _event(
            "k-e4",
            "EXTENDED",
            stage,
            T0 + 2 * DAY,
            matter_id=matter_id,
            extension_days=10,
            reason="需补充勘界",
        ),
        _event("k-e5", "HANDED_ON", stage, T0 + 3 * DAY, matter_id=matter_id, handed_to_department="housing"),
        _event("k-e6", "RESOLVED", stage, T0 + 4 * DAY, matter_id=matter_id),
        _event("k-e7", "EVALUATED", stage, T0 + 5 * DAY, matter_id=matter_id, satisfaction="SATISFIED"),
        _event("k-e8", "REVISITED", stage, T0 + 6 * DAY, matter_id=matter_id, satisfaction="BASICALLY"),
    ]
    ids = []
    for e in steps:
        resp = _record(stub, e)
        assert resp.recorded is True and resp.event_id.startswith("e-")
        assert resp.state.matter_id == matter_id
        ids.append(resp.event_id)
    assert len(set(ids)) == len(ids)
    got = _matter(stub, matter_id)
    assert _kinds(got) == [
        "FIRST_CONTACT",
        "PLAN_MADE",
        "ACCEPTED",
        "EXTENDED",
        "HANDED_ON",
        "RESOLVED",
        "EVALUATED",
        "REVISITED",
    ]
    assert [r.event_id for r in got.events] == ids
    assert got.events[0].event.matter_id in ("", matter_id)
    assert got.state.status == "RESOLVED"
    assert got.state.extension_days == 10
    assert got.state.owner_department == "housing"
    assert got.state.first_receiver.code == VIL
    assert got.state.resolved_level == pb.TIER_VILLAGE
    assert got.state.satisfaction in (pb.SATISFACTION_SATISFIED, pb.SATISFACTION_BASICALLY)
    assert [c.complaint_id for c in got.complaints] == ["k-1"]

    # FAILED, REFUSED, WITHDRAWN: on matters of their own.
    for n, (kind, text, phone) in enumerate(
        [
            ("FAILED", WAGES, "13900000001"),
            ("REFUSED", DRAIN, "13900000002"),
            ("WITHDRAWN", GRASS, "13900000003"),
        ]
    ):
        d = _triage(
            stub,
            _complaint(
                f"k-{kind}", text, phone=phone, region={"banner_code": BANNER, "township_code": OTHER_TWP}
            ),
        )
        r = _record(
            stub,
            _event(
                f"k-{kind}", kind, d["stage"], T0 + DAY, matter_id=d["matter"]["matter_id"], reason=f"第{n}次"
            ),
        )
        assert r.recorded
        state = _matter(stub, d["matter"]["matter_id"]).state
        if kind == "WITHDRAWN":
            assert state.status == "WITHDRAWN"
        else:
            assert state.last_outcome == getattr(pb, f"OUTCOME_{kind}")
            assert state.last_outcome_stage == getattr(pb, f"STAGE_{d['stage']}")


def test_events_a_repeated_key_is_harmless_and_late_events_are_placed_by_time(served: Any) -> None:
    stub = served
    d = _triage(stub, _complaint("r-1", GRASS))
    mid, stage = d["matter"]["matter_id"], d["stage"]
    later = _record(stub, _event("r-plan", "PLAN_MADE", stage, T0 + 7200, matter_id=mid))
    again = _record(stub, _event("r-plan", "PLAN_MADE", stage, T0 + 7200, matter_id=mid))
    assert later.recorded is True and again.recorded is False
    assert again.event_id == later.event_id
    earlier = _record(stub, _event("r-contact", "FIRST_CONTACT", stage, T0 + 3600, matter_id=mid))
    got = _matter(stub, mid)
    assert _kinds(got) == ["FIRST_CONTACT", "PLAN_MADE"]
    assert [r.event_id for r in got.events] == [earlier.event_id, later.event_id]
    assert got.state.met.first_contact_by.seconds == T0 + 3600


def test_events_unknown_matter_or_decision_is_not_found(served: Any) -> None:
    stub = served
    for ident in ({"matter_id": "m-" + "0" * 32}, {"decision_id": "f" * 32}):
        err, raw = _error(stub, _event("n-1", "FIRST_CONTACT", "MEDIATE", T0, **ident))
        assert raw.code() == grpc.StatusCode.NOT_FOUND, err
        assert err["reason"] == "MATTER_NOT_FOUND"


def _precondition(raw: grpc.RpcError) -> list[str]:
    st = rpc_status.from_call(raw)
    assert st is not None
    out = []
    for detail in st.details:
        if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pf = error_details_pb2.PreconditionFailure()
            detail.Unpack(pf)
            out.extend(v.type for v in pf.violations if v.description)
    return out


def test_events_impossible_events_are_failed_precondition_naming_why(served: Any) -> None:
    stub = served
    d = _triage(stub, _complaint("p-1", GRASS))
    mid, stage = d["matter"]["matter_id"], d["stage"]
    _record(stub, _event("p-x1", "EXTENDED", stage, T0 + DAY, matter_id=mid, extension_days=5, reason="勘界"))
    err, raw = _error(
        stub, _event("p-x2", "EXTENDED", stage, T0 + 2 * DAY, matter_id=mid, extension_days=5, reason="再延")
    )
    assert raw.code() == grpc.StatusCode.FAILED_PRECONDITION, err
    assert err["reason"] == "EVENT_REJECTED" and _precondition(raw)

    w = _triage(
        stub,
        _complaint(
            "p-2", WAGES, phone="13900000009", region={"banner_code": BANNER, "township_code": OTHER_TWP}
        ),
    )
    wid = w["matter"]["matter_id"]
    _record(stub, _event("p-w", "WITHDRAWN", w["stage"], T0 + DAY, matter_id=wid))
    err, raw = _error(stub, _event("p-r", "RESOLVED", w["stage"], T0 + 2 * DAY, matter_id=wid))
    assert raw.code() == grpc.StatusCode.FAILED_PRECONDITION, err
    assert _precondition(raw)
    assert _kinds(_matter(stub, wid)) == ["WITHDRAWN"]


def test_events_invalid_argument_names_every_bad_field(served: Any) -> None:
    stub = served
    err, raw = _error(stub, pb.MatterEvent())
    assert raw.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err["reason"] == "INVALID_EVENT"
    assert bad_fields(err) == {
        "event.idempotency_key",
        "event.matter_id",
        "event.kind",
        "event.stage",
        "event.occurred_at",
        "event.actor.code",
    }
    future = int(datetime.now(UTC).timestamp()) + 10 * DAY
    e = _event("x" * 200, "EXTENDED", "MEDIATE", future, matter_id="m-123", extension_days=31)
    e.actor.code = "12345"
    e.satisfaction = pb.SATISFACTION_SATISFIED
    e.handed_to_department = "housing"
    err, _raw = _error(stub, e)
    assert bad_fields(err) == {
        "event.idempotency_key",
        "event.matter_id",
        "event.occurred_at",
        "event.actor.code",
        "event.extension_days",
        "event.reason",
        "event.satisfaction",
        "event.handed_to_department",
    }
    both = _event(
        "b",
        "HANDED_ON",
        "MEDIATE",
        T0,
        matter_id="m-" + "0" * 32,
        decision_id="d",
        handed_to_department="nowhere",
    )
    err, _raw = _error(stub, both)
    assert bad_fields(err) == {"event.decision_id", "event.handed_to_department"}
    err, _raw = _error(stub, _event("h", "HANDED_ON", "MEDIATE", T0, matter_id="m-" + "0" * 32))
    assert bad_fields(err) == {"event.handed_to_department"}
    err, _raw = _error(stub, _event("v", "EVALUATED", "MEDIATE", T0, matter_id="m-" + "0" * 32))
    assert bad_fields(err) == {"event.satisfaction"}
    err, _raw = _error(stub, _event(f"key-{PHONE}", "ACCEPTED", "MEDIATE", T0, decision_id="not-a-decision"))
    assert bad_fields(err) == {"event.idempotency_key", "event.decision_id"}


def test_events_stream_answers_each_in_order_and_goes_on_after_a_bad_one(served: Any) -> None:
    stub = served
    d = _triage(stub, _complaint("s-1", GRASS))
    mid, stage = d["matter"]["matter_id"], d["stage"]
    reqs = [
        pb.RecordEventRequest(event=_event("s-a", "FIRST_CONTACT", stage, T0 + 60, matter_id=mid)),
        pb.RecordEventRequest(event=pb.MatterEvent()),
        pb.RecordEventRequest(event=_event("s-b", "PLAN_MADE", stage, T0 + 120, matter_id=mid)),
        pb.RecordEventRequest(event=_event("s-c", "ACCEPTED", stage, T0 + 180, matter_id="m-" + "0" * 32)),
        pb.RecordEventRequest(event=_event("s-a", "FIRST_CONTACT", stage, T0 + 60, matter_id=mid)),
    ]
    answers = list(stub.RecordEvents(iter(reqs), timeout=30))
    assert [a.index for a in answers] == [0, 1, 2, 3, 4]
    assert [a.WhichOneof("result") for a in answers] == ["recorded", "error", "recorded", "error", "recorded"]
    assert answers[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert answers[3].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert answers[4].recorded.recorded is False
    assert answers[4].recorded.event_id == answers[0].recorded.event_id
    assert _kinds(_matter(stub, mid)) == ["FIRST_CONTACT", "PLAN_MADE"]


def _control(stub: Any, cid: str, text: str, last_stage: str, last_outcome: str) -> dict[str, Any]:
    """The same complaint from someone else, with last_stage/last_outcome sent by the frontend."""
    return _triage(
        stub,
        _complaint(
            cid,
            text,
            phone="13800000000" + cid[-1],
            region={"banner_code": BANNER, "township_code": OTHER_TWP},
            last_stage=last_stage,
            last_outcome=last_outcome,
        ),
    )


def test_events_a_failed_stage_moves_the_matter_on_by_itself(served: Any) -> None:
    stub = served
    first = _triage(stub, _complaint("t-1", GRASS))
    mid, stage = first["matter"]["matter_id"], first["stage"]
    failed = _record(stub, _event("t-f", "FAILED", stage, T0 + 5 * DAY, matter_id=mid, reason="一方拒不到场"))
    assert failed.state.last_outcome == pb.OUTCOME_FAILED
    control = _control(stub, "t-c1", GRASS, stage, "FAILED")
    assert control["stage"] != stage  # the pack moves this category on after a failed stage
    again = _triage(stub, _complaint("t-2", GRASS_AGAIN, received_at="2026-03-10T09:00:00+08:00"))
    assert again["matter"]["matter_id"] == mid
    assert again["stage"] == control["stage"]
    assert any(e["rule"].startswith("retriage.") for e in again["trace"])
    assert any(failed.event_id in n for n in again["notes"])
    assert not any(failed.event_id in n for n in first["notes"])


def test_events_the_sent_later_stage_wins_over_the_matters(served: Any) -> None:
    stub = served
    first = _triage(stub, _complaint("u-1", GRASS))
    mid, stage = first["matter"]["matter_id"], first["stage"]
    failed = _record(stub, _event("u-f", "REFUSED", stage, T0 + DAY, matter_id=mid))
    control = _control(stub, "u-c2", GRASS, "LITIGATE", "FAILED")
    sent = _triage(
        stub,
        _complaint(
            "u-2",
            GRASS_AGAIN,
            received_at="2026-03-10T09:00:00+08:00",
            last_stage="LITIGATE",
            last_outcome="FAILED",
        ),
    )
    assert sent["matter"]["matter_id"] == mid
    assert sent["stage"] == control["stage"]
    assert not any(failed.event_id in n for n in sent["notes"])


def test_events_a_handed_on_matter_names_its_new_owner_and_keeps_its_first_receiver(served: Any) -> None:
    stub = served
    first = _triage(stub, _complaint("h-1", GRASS))
    mid = first["matter"]["matter_id"]
    assert first["owner_department"] != "housing"
    _record(
        stub,
        _event(
            "h-e",
            "HANDED_ON",
            first["stage"],
            T0 + DAY,
            matter_id=mid,
            handed_to_department="housing",
            handed_to_point=pb.ReceivingPoint(code=TWP, level=pb.TIER_TOWNSHIP),
        ),
    )
    again = _triage(stub, _complaint("h-2", GRASS_AGAIN, received_at="2026-03-10T09:00:00+08:00"))
    assert again["matter"]["matter_id"] == mid
    assert again["owner_department"] == "housing"
    assert "route.matter.handed_on" in [e["rule"] for e in again["trace"]]
    assert again["matter"]["first_receiver"] == {"point": VIL, "level": "VILLAGE"}
    assert again["owning_point"] == {"code": VIL, "level": "VILLAGE"}
    assert _matter(stub, mid).state.owner_department == "housing"


def _overdue(stub: Any, **kw: Any) -> list[pb.OverdueMatter]:
    return list(stub.ListOverdue(pb.ListOverdueRequest(**kw), timeout=30))


def test_events_list_overdue_filters_and_says_how_far_past(served: Any) -> None:
    stub = served
    a = _triage(stub, _complaint("o-1", GRASS))
    b = _triage(
        stub,
        _complaint(
            "o-2", WAGES, phone="13900000011", region={"banner_code": BANNER, "township_code": OTHER_TWP}
        ),
    )
    c = _triage(
        stub,
        _complaint(
            "o-3", DRAIN, phone="13900000012", region={"banner_code": BANNER, "township_code": OTHER_TWP}
        ),
    )
    ids = {d["matter"]["matter_id"] for d in (a, b, c)}
    assert len(ids) == 3
    due_a = _epoch(a["deadlines"]["first_contact_by"])
    as_of = due_a + 3600
    # c is contacted in time: its first contact is no longer due.
    _record(stub, _event("o-c", "FIRST_CONTACT", c["stage"], T0 + 60, matter_id=c["matter"]["matter_id"]))
    listed = _overdue(stub, as_of=_ts(as_of))
    by_id = {m.state.matter_id: m for m in listed}
    assert a["matter"]["matter_id"] in by_id
    fc = [o for o in by_id[a["matter"]["matter_id"]].overdue if o.deadline == "first_contact_by"]
    assert fc and fc[0].due.seconds == due_a and fc[0].seconds_past == as_of - due_a
    if c["matter"]["matter_id"] in by_id:
        assert "first_contact_by" not in {o.deadline for o in by_id[c["matter"]["matter_id"]].overdue}
    for m in listed:
        for o in m.overdue:
            assert o.seconds_past == as_of - o.due.seconds > 0
    only_other = _overdue(stub, as_of=_ts(as_of), township_code=OTHER_TWP)
    assert {m.state.township_code for m in only_other} <= {OTHER_TWP}
    assert a["matter"]["matter_id"] not in {m.state.matter_id for m in only_other}
    colour = getattr(pb, f"COLOR_{a['color']}")
    assert {m.state.color for m in _overdue(stub, as_of=_ts(as_of), color=colour)} <= {colour}
    assert len(_overdue(stub, as_of=_ts(as_of), limit=1)) == 1
    assert _overdue(stub, as_of=_ts(T0 - DAY)) == []
    with pytest.raises(grpc.RpcError) as info:
        _overdue(stub, limit=10_001, point="12", township_code="x1", color=99)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(error_of(info.value)) == {"limit", "point", "township_code", "color"}


def test_events_no_store_is_failed_precondition(triage: Triage) -> None:
    with serving(triage) as (target, _), stub_for(target) as stub:
        err, raw = _error(stub, _event("z", "FIRST_CONTACT", "MEDIATE", T0, matter_id="m-" + "0" * 32))
        assert raw.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err["reason"] == "NO_MATTER_STORE"
        with pytest.raises(grpc.RpcError) as info:
            _overdue(stub)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_events_no_personal_data_in_answers_errors_or_logs(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stub = served
    caplog.set_level(logging.DEBUG)
    d = _triage(stub, _complaint("q-1", GRASS))
    mid, stage = d["matter"]["matter_id"], d["stage"]
    reason = f"申请人电话{PHONE}，身份证{ID_NUMBER}，要求延期"
    resp = _record(
        stub, _event("q-x", "EXTENDED", stage, T0 + DAY, matter_id=mid, extension_days=3, reason=reason)
    )
    got = _matter(stub, mid)
    stored = [r.event.reason for r in got.events]
    assert stored and all(PHONE not in r and ID_NUMBER not in r for r in stored)
    assert "[phone]" in stored[0] and "[id-number]" in stored[0]
    bad = _event(PHONE, "EXTENDED", stage, T0 + DAY, matter_id=ID_NUMBER, extension_days=99, reason=reason)
    err, _raw = _error(stub, bad)
    second, _raw = _error(
        stub, _event("q-y", "EXTENDED", stage, T0 + DAY, matter_id=mid, extension_days=3, reason=reason)
    )
    text = json.dumps([err, second], ensure_ascii=False) + resp.SerializeToString().decode("latin-1")
    text += got.SerializeToString().decode("latin-1") + caplog.text
    assert PHONE not in text and ID_NUMBER not in text and "张三" not in caplog.text


def test_events_get_matter_json_form_has_events_and_state(served: Any) -> None:
    stub = served
    d = _triage(stub, _complaint("j-1", GRASS))
    mid = d["matter"]["matter_id"]
    r = _record(stub, _event("j-c", "FIRST_CONTACT", d["stage"], T0 + 60, matter_id=mid))
    got = convert.matter_from_response(_matter(stub, mid))
    assert [e["event_id"] for e in got["events"]] == [r.event_id]
    assert got["events"][0]["event"]["kind"] == "EVENT_KIND_FIRST_CONTACT"
    assert got["state"]["matter_id"] == mid and got["state"]["status"] == "OPEN"
    assert PHONE not in json.dumps(got, ensure_ascii=False)


def test_events_bytes_that_are_no_message_are_invalid_argument_and_the_stream_goes_on(served: Any) -> None:
    stub = served
    d = _triage(stub, _complaint("m-1", GRASS))
    good = pb.RecordEventRequest(
        event=_event("m-ok", "FIRST_CONTACT", d["stage"], T0 + 60, matter_id=d["matter"]["matter_id"])
    ).SerializeToString()
    not_utf8 = good.replace(b"m-ok", b"\xff\xfe\xfd\xfc")
    method = "/fenliu.v1.TriageService/"
    with grpc.insecure_channel(stub.target) as channel:
        _garbage_calls(channel, method, good, not_utf8)


def _garbage_calls(channel: grpc.Channel, method: str, good: bytes, not_utf8: bytes) -> None:
    for garbage in (b"\xff\xff\xff\xff", not_utf8):
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(method + "RecordEvent")(garbage, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_of(info.value)["reason"] == "MALFORMED_REQUEST"
    with pytest.raises(grpc.RpcError) as info:
        list(channel.unary_stream(method + "ListOverdue")(b"\xff\xff", timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    call = channel.stream_stream(
        method + "RecordEvents", response_deserializer=pb.RecordEventsResponse.FromString
    )
    items = list(call(iter([b"\xff\xff\xff", good]), timeout=10))
    assert [i.WhichOneof("result") for i in items] == ["error", "recorded"]
    assert [i.index for i in items] == [0, 1]


def test_events_a_store_that_cannot_answer_is_unavailable_and_the_event_can_be_sent_again(
    triage: Triage, tmp_path: Path
) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    url = f"sqlite:///{tmp_path / 'matters.db'}"
    config = ServeConfig(store=url, store_key_file=str(key), store_deadline_ms=2000)
    first = open_matters(config)
    assert first is not None
    with serving(triage, matters=first) as (target, _), stub_for(target) as stub:
        d = _triage(stub, _complaint("a-1", GRASS))
        event = _event("a-e", "FIRST_CONTACT", d["stage"], T0 + 60, matter_id=d["matter"]["matter_id"])
        first.close()  # the store goes away under the running server
        err, raw = _error(stub, event)
        assert raw.code() == grpc.StatusCode.UNAVAILABLE, err
        assert err["reason"] == "MATTER_STORE_UNAVAILABLE"
    again = open_matters(config)  # the same file, reached again: the retry with the same key is stored once
    assert again is not None
    try:
        with serving(triage, matters=again) as (target, _), stub_for(target) as stub:
            stored = _record(stub, event)
            repeat = _record(stub, event)
            assert stored.recorded is True and repeat.recorded is False
            assert _kinds(_matter(stub, d["matter"]["matter_id"])) == ["FIRST_CONTACT"]
    finally:
        again.close()
