"""fenliu.v1.TriageService on a real port with the real engine: round trips, errors, health, reflection."""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from fenliu import Triage, complaint_from_dict
from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.domain.model import MAX_HINT, MAX_ID, MAX_TEXT, MAX_TITLE
from fenliu.serving import convert
from fenliu.serving.logs import JsonFormatter
from fenliu.serving.server import SERVICE_NAME
from grpc_helpers import (
    PACK,
    RECEIVED_AT,
    bad_fields,
    comparable,
    error_of,
    pack_complaints,
    serving,
    stub_for,
)

TRIAGE = "/fenliu.v1.TriageService/Triage"
STREAM = "/fenliu.v1.TriageService/TriageStream"


@pytest.fixture(scope="module")
def local() -> Triage:
    """A second engine, in-process, to compare the service's decisions with."""
    return Triage.from_path(str(PACK))


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with serving(Triage.from_path(str(PACK))) as (address, _):
        yield address


@pytest.fixture(scope="module")
def stub(target: str) -> Iterator[Any]:
    with stub_for(target) as s:
        yield s


@pytest.fixture(scope="module")
def complaints() -> list[dict[str, Any]]:
    cs = pack_complaints()
    assert len(cs) >= 100
    return cs


def _expected(local: Triage, d: dict[str, Any]) -> dict[str, Any]:
    return comparable(local.decide(complaint_from_dict(d)).to_dict(trace=True))


def _triage_error(stub: Any, complaint: Any) -> dict[str, Any]:
    with pytest.raises(grpc.RpcError) as info:
        stub.Triage(pb.TriageRequest(complaint=complaint), timeout=10)
    return error_of(info.value)


# ----------------------------------------------------------------------------------------------------
# Round trips


def test_unary_round_trip_matches_local_decide(
    stub: Any, local: Triage, complaints: list[dict[str, Any]]
) -> None:
    for d in complaints:
        resp = stub.Triage(
            pb.TriageRequest(complaint=convert.complaint_to_proto(d), include_trace=True), timeout=10
        )
        got = comparable(convert.decision_from_proto(resp.decision, trace=True))
        assert got == _expected(local, d), d["id"]
        assert resp.decision.decision_id


def test_unary_without_trace_omits_trace_and_notes(
    stub: Any, local: Triage, complaints: list[dict[str, Any]]
) -> None:
    d = complaints[0]
    resp = stub.Triage(pb.TriageRequest(complaint=convert.complaint_to_proto(d)), timeout=10)
    assert not resp.decision.trace and not resp.decision.notes
    want = comparable(local.decide(complaint_from_dict(d)).to_dict(trace=False))
    assert comparable(convert.decision_from_proto(resp.decision, trace=False)) == want


def test_unary_and_stream_without_trace_match_local_decide(
    stub: Any, local: Triage, complaints: list[dict[str, Any]]
) -> None:
    """Without the trace the answer is written from the outcome's serialized template: every field
    must still be the complaint's own (ids, existing case, deadlines) and its outcome's."""
    want = [comparable(local.decide(complaint_from_dict(d)).to_dict(trace=False)) for d in complaints]
    assert any(d.get("existing_case_id") for d in complaints)
    for d, w in zip(complaints, want, strict=True):
        resp = stub.Triage(pb.TriageRequest(complaint=convert.complaint_to_proto(d)), timeout=10)
        assert comparable(convert.decision_from_proto(resp.decision, trace=False)) == w, d["id"]
    requests = [pb.TriageStreamRequest(complaint=convert.complaint_to_proto(d)) for d in complaints]
    responses = list(stub.TriageStream(iter(requests), timeout=60))
    for i, (d, resp, w) in enumerate(zip(complaints, responses, want, strict=True)):
        assert (resp.index, resp.complaint_id, resp.WhichOneof("result")) == (i, d["id"], "decision")
        assert comparable(convert.decision_from_proto(resp.decision, trace=False)) == w, d["id"]


def test_stream_round_trip_matches_local_decide_and_goes_on_after_bad_items(
    stub: Any, local: Triage, complaints: list[dict[str, Any]]
) -> None:
    requests: list[Any] = []
    expected: list[dict[str, Any] | None] = []
    for i, d in enumerate(complaints):
        requests.append(pb.TriageStreamRequest(complaint=convert.complaint_to_proto(d), include_trace=True))
        expected.append(_expected(local, d))
        if i % 25 == 3:  # a bad complaint now and then
            requests.append(pb.TriageStreamRequest(complaint=pb.Complaint(id=f"bad-{i}", people_involved=-2)))
            expected.append(None)
    responses = list(stub.TriageStream(iter(requests), timeout=60))
    assert len(responses) == len(requests)
    for i, (req, resp, want) in enumerate(zip(requests, responses, expected, strict=True)):
        assert resp.index == i
        assert resp.complaint_id == req.complaint.id
        if want is None:
            assert resp.WhichOneof("result") == "error"
            assert resp.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            err = _status_dict(resp.error)
            assert bad_fields(err) == {"complaint.people_involved", "complaint.text"}
            assert err["reason"] == "INVALID_COMPLAINT"
        else:
            assert resp.WhichOneof("result") == "decision"
            assert comparable(convert.decision_from_proto(resp.decision, trace=True)) == want


def test_stream_decisions_equal_fenliu_eval_output(
    stub: Any, complaints: list[dict[str, Any]], tmp_path: Path
) -> None:
    source = tmp_path / "complaints.jsonl"
    source.write_text(
        "\n".join(json.dumps(d, ensure_ascii=False) for d in complaints) + "\n", encoding="utf-8"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "fenliu.cli", "eval", str(PACK), str(source), "--trace"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    evaluated = [json.loads(line) for line in proc.stdout.splitlines()]
    requests = [
        pb.TriageStreamRequest(complaint=convert.complaint_to_proto(d), include_trace=True)
        for d in complaints
    ]
    served = [
        convert.decision_from_proto(i.decision, trace=True)
        for i in stub.TriageStream(iter(requests), timeout=60)
    ]
    assert len(served) == len(evaluated) == len(complaints)
    for got, want in zip(served, evaluated, strict=True):
        assert comparable(got) == comparable(want)


def _status_dict(st: Any) -> dict[str, Any]:
    from fenliu.serving.server import status_to_dict

    return status_to_dict(st)


def test_get_rule_pack_reports_name_revision_rules_and_categories(stub: Any, local: Triage) -> None:
    info = local.info()
    assert info is not None
    resp = stub.GetRulePack(pb.GetRulePackRequest(), timeout=10)
    assert (resp.name, resp.revision, resp.digest) == (info.name, info.revision, info.digest)
    assert resp.rule_count == info.rule_count > 0
    assert [(c.code, c.name) for c in resp.categories] == list(info.categories)
    names = {c.code: c.name for c in resp.categories}
    assert len(set(names) - {"unclassified"}) == 22
    assert names["neighbor"] == "邻里纠纷"
    loaded = resp.loaded_at.ToDatetime(tzinfo=UTC)
    assert abs((datetime.now(UTC) - loaded).total_seconds()) < 600


def test_complaint_json_form_survives_proto_round_trip(complaints: list[dict[str, Any]]) -> None:
    for d in complaints:
        back, bad = convert.complaint_dict_from_proto(convert.complaint_to_proto(d))
        assert not bad
        assert complaint_from_dict(back) == complaint_from_dict(d)


# ----------------------------------------------------------------------------------------------------
# Errors


def test_empty_complaint_invalid_argument_names_id_and_text(stub: Any) -> None:
    err = _triage_error(stub, pb.Complaint())
    assert err["code"] == "INVALID_ARGUMENT"
    assert bad_fields(err) == {"complaint.id", "complaint.text"}
    assert err["reason"] == "INVALID_COMPLAINT" and err["domain"] == "fenliu.v1"


def test_every_bad_field_named_in_one_bad_request(stub: Any) -> None:
    c = pb.Complaint(
        id="x" * (MAX_ID + 1),
        title="t" * (MAX_TITLE + 1),
        text="文" * (MAX_TEXT + 1),
        category_hint="h" * (MAX_HINT + 1),
        existing_case_id="e\x00e",
        people_involved=-1,
        repeat_visits=-5,
        amount_yuan=math.nan,
    )
    for name in convert.COMPLAINT_ENUM_TYPES:
        setattr(c, name, 99)  # unknown enum numbers
    c.region.village_code = "v" * 100
    c.complainant.name = "n" * 500
    c.received_at.seconds = 1_700_000_000
    c.received_at.nanos = 2_000_000_000
    with pytest.raises(grpc.RpcError) as info:
        stub.Triage(pb.TriageRequest(complaint=c), timeout=10)
    st = __import__("grpc_status").rpc_status.from_call(info.value)
    bad_requests = [d for d in st.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR)]
    infos = [d for d in st.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    chinese = [d for d in st.details if d.Is(error_details_pb2.LocalizedMessage.DESCRIPTOR)]
    assert len(bad_requests) == 1 and len(infos) == 1 and len(chinese) == 1 and len(st.details) == 3
    err = error_of(info.value)
    assert bad_fields(err) == {
        "complaint.id",
        "complaint.title",
        "complaint.text",
        "complaint.category_hint",
        "complaint.existing_case_id",
        "complaint.people_involved",
        "complaint.repeat_visits",
        "complaint.amount_yuan",
        "complaint.channel",
        "complaint.intent",
        "complaint.received_tier",
        "complaint.public_opinion",
        "complaint.procedure",
        "complaint.last_stage",
        "complaint.last_outcome",
        "complaint.region.village_code",
        "complaint.complainant.name",
        "complaint.received_at",
    }
    assert err["code"] == "INVALID_ARGUMENT"


def test_errors_never_echo_submitted_values_or_personal_data(stub: Any) -> None:
    c = pb.Complaint(id="秘密-id-7731", text="我叫张三丰，电话13800138000", people_involved=-3)
    c.channel = 42  # type: ignore[assignment]
    c.complainant.name = "张三丰"
    c.complainant.id_number = "150627199001011234"
    c.complainant.phone = "13800138000"
    c.region.village_code = "村" * 70
    with pytest.raises(grpc.RpcError) as info:
        stub.Triage(pb.TriageRequest(complaint=c), timeout=10)
    st = __import__("grpc_status").rpc_status.from_call(info.value)
    blob = st.SerializeToString().decode("utf-8", "replace") + info.value.details()
    for secret in ("秘密-id-7731", "张三丰", "150627199001011234", "13800138000", "村村", "Traceback", "42"):
        assert secret not in blob
    assert bad_fields(error_of(info.value)) == {
        "complaint.people_involved",
        "complaint.channel",
        "complaint.region.village_code",
    }


def test_no_pack_unavailable_for_every_method() -> None:
    with serving(Triage.empty()) as (target, _), stub_for(target) as stub:
        c = convert.complaint_to_proto({"id": "a", "text": "邻居"})
        err = _triage_error(stub, c)
        assert err["code"] == "UNAVAILABLE" and err["reason"] == "NO_RULE_PACK"
        with pytest.raises(grpc.RpcError) as info:
            stub.GetRulePack(pb.GetRulePackRequest(), timeout=10)
        assert error_of(info.value)["code"] == "UNAVAILABLE"
        (item,) = list(stub.TriageStream(iter([pb.TriageStreamRequest(complaint=c)]), timeout=10))
        assert item.complaint_id == "a" and item.error.code == grpc.StatusCode.UNAVAILABLE.value[0]


def test_garbage_bytes_invalid_argument_not_internal(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        raw = channel.unary_unary(TRIAGE)
        for garbage in (b"\xff\xff\xff\xff", b"\x0a\x05abc", b"\x0b", b"\x0a\xff\xff\xff\xff\x0f"):
            with pytest.raises(grpc.RpcError) as info:
                raw(garbage, timeout=10)
            err = error_of(info.value)
            assert err["code"] == "INVALID_ARGUMENT", garbage
            assert err["reason"] == "MALFORMED_REQUEST"
            assert "not a valid fenliu.v1.TriageRequest" in err["message"]
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary("/fenliu.v1.TriageService/GetRulePack")(b"\xff\xff", timeout=10)
        assert error_of(info.value)["code"] == "INVALID_ARGUMENT"


def test_invalid_utf8_in_string_fields_invalid_argument_names_them(target: str) -> None:
    c = pb.Complaint(id="utf8-1", text="AAAA", title="ok")
    c.region.village_code = "150626100201"  # a valid code, whose bytes are replaced below
    data = pb.TriageRequest(complaint=c).SerializeToString()
    data = data.replace(b"AAAA", b"\xc3\x28\xff\xfe").replace(b"150626100201", b"\xed\xa0\x80!15062610")
    with grpc.insecure_channel(target) as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(TRIAGE)(data, timeout=10)
        err = error_of(info.value)
        assert err["code"] == "INVALID_ARGUMENT"
        assert bad_fields(err) == {"complaint.text", "complaint.region.village_code"}
        # on a stream: an error item with the (valid) id, then the stream goes on
        good = pb.TriageStreamRequest(complaint=pb.Complaint(id="g", text="邻居家排水")).SerializeToString()
        bad = pb.TriageStreamRequest(complaint=c).SerializeToString().replace(b"AAAA", b"\xff\xff\xff\xff")
        call = channel.stream_stream(STREAM, response_deserializer=pb.TriageStreamResponse.FromString)
        items = list(call(iter([good, bad, b"\xff\xff\xff", good]), timeout=10))
    assert [i.WhichOneof("result") for i in items] == ["decision", "error", "error", "decision"]
    assert [i.index for i in items] == [0, 1, 2, 3]
    assert items[1].complaint_id == "utf8-1"
    assert bad_fields(_status_dict(items[1].error)) == {"complaint.text"}
    assert _status_dict(items[2].error)["reason"] == "MALFORMED_REQUEST"


def test_message_over_limit_resource_exhausted() -> None:
    with serving(Triage.empty(), max_message_bytes=64 * 1024) as (target, _), stub_for(target) as stub:
        with pytest.raises(grpc.RpcError) as info:
            stub.Triage(pb.TriageRequest(complaint=pb.Complaint(id="big", text="x" * 100_000)), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


class _Broken:
    """An engine that fails with a message quoting the complaint, as a buggy engine might."""

    def decide(self, complaint: Any) -> Any:
        raise RuntimeError(f"boom on {complaint.text}")

    def info(self) -> Any:
        return None

    def load(self, path: str) -> Any:
        return None

    def add_listener(self, fn: Any) -> None:
        pass


def test_engine_failure_internal_without_trace_or_values_in_status_and_log() -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("fenliu.server")
    logger.addHandler(handler)
    try:
        with serving(_Broken()) as (target, _), stub_for(target) as stub:
            err = _triage_error(stub, pb.Complaint(id="a", text="张三丰的秘密"))
    finally:
        logger.removeHandler(handler)
    assert err["code"] == "INTERNAL" and err["reason"] == "ENGINE_FAILURE"
    assert "张三丰" not in json.dumps(err, ensure_ascii=False)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    (line,) = [e for e in lines if e["event"] == "engine_failure"]
    assert line["exc_type"] == "RuntimeError" and line["level"] == "ERROR"
    assert "张三丰" not in buf.getvalue() and "Traceback" not in buf.getvalue()


def test_observers_and_interceptors_see_every_item() -> None:
    seen: list[tuple[str, bool, bool, str]] = []
    methods: list[str] = []

    def observer(method: str, complaint: Any, decision: Any, code: grpc.StatusCode) -> None:
        seen.append((method, complaint is not None, decision is not None, code.name))

    class Interceptor(grpc.ServerInterceptor):  # type: ignore[misc]
        def intercept_service(self, continuation: Any, details: Any) -> Any:
            methods.append(details.method)
            return continuation(details)

    triage = Triage.from_path(str(PACK))
    with (
        serving(triage, observers=[observer], interceptors=[Interceptor()]) as (target, _),
        stub_for(target) as stub,
    ):
        good = convert.complaint_to_proto({"id": "a", "text": "邻居家排水"})
        stub.Triage(pb.TriageRequest(complaint=good), timeout=10)
        with pytest.raises(grpc.RpcError):
            stub.Triage(pb.TriageRequest(complaint=pb.Complaint()), timeout=10)
        list(stub.TriageStream(iter([pb.TriageStreamRequest(complaint=good)] * 2), timeout=10))
    assert seen == [
        ("Triage", True, True, "OK"),
        ("Triage", False, False, "INVALID_ARGUMENT"),
        ("TriageStream", True, True, "OK"),
        ("TriageStream", True, True, "OK"),
    ]
    assert methods == [TRIAGE, TRIAGE, STREAM]


# ----------------------------------------------------------------------------------------------------
# Health and reflection


def _health(target: str, service: str) -> str:
    with grpc.insecure_channel(target) as channel:
        resp = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


def test_health_not_serving_before_a_pack_then_serving_after_load() -> None:
    triage = Triage.empty()
    with serving(triage) as (target, _):
        assert _health(target, "") == "NOT_SERVING"
        assert _health(target, SERVICE_NAME) == "NOT_SERVING"
        result = triage.load(str(PACK))
        assert result.ok
        assert _health(target, "") == "SERVING"
        assert _health(target, SERVICE_NAME) == "SERVING"


def test_health_serving_with_a_pack(target: str) -> None:
    assert _health(target, "") == "SERVING"
    assert _health(target, SERVICE_NAME) == "SERVING"


def test_reflection_lists_services_and_calls_triage_with_reflected_messages(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
        pool = DescriptorPool(db)
        service = pool.FindServiceByName(SERVICE_NAME)
        assert {m.name for m in service.methods} == {
            "Triage",
            "TriageStream",
            "GetRulePack",
            "GetMatter",
            "RecordEvent",
            "RecordEvents",
            "ListOverdue",
        }
        method = service.methods_by_name["Triage"]
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        request = json_format.ParseDict(
            {
                "complaint": {
                    "id": "reflected-1",
                    "text": "公司拖欠我们十二个农民工的工资",
                    "peopleInvolved": "12",
                    "channel": "CHANNEL_PHONE",
                    "receivedAt": "2025-03-01T01:30:00Z",
                },
                "includeTrace": True,
            },
            request_cls(),
        )
        call = channel.unary_unary(
            f"/{SERVICE_NAME}/Triage",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        resp = call(request, timeout=10)
    decision = json_format.MessageToDict(resp)["decision"]
    assert decision["complaintId"] == "reflected-1"
    assert decision["category"] == "wage_arrears"
    assert decision["color"] == "COLOR_RED"
    assert decision["trace"]


# ----------------------------------------------------------------------------------------------------
# fenliu call


def test_call_command_prints_decision_and_errors(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    from fenliu.cli.serve import add_call_arguments, run_call

    parser = argparse.ArgumentParser()
    add_call_arguments(parser)
    sample = json.dumps(
        {"id": "cli-1", "text": "邻居家的排水沟堵了", "received_at": RECEIVED_AT}, ensure_ascii=False
    )
    assert run_call(parser.parse_args([sample, "--address", target, "--trace"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["complaint_id"] == "cli-1" and out["category"] == "neighbor" and out["trace"]
    # refused before it is sent, every bad field named as `fenliu eval` names it
    assert run_call(parser.parse_args(['{"text": "x", "people_involved": -1}', "--address", target])) == 1
    err = json.loads(capsys.readouterr().out)
    assert err["error"] == "INVALID_ARGUMENT"
    assert {v["field"] for v in err["field_violations"]} == {"id", "people_involved"}
    # a list: the invalid item is refused here, the valid ones still go over the stream
    batch = json.dumps([{"id": "b0"}, {"id": "b1", "text": "邻居"}], ensure_ascii=False)
    assert run_call(parser.parse_args([batch, "--address", target])) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (
        lines[0]["index"] == 0
        and lines[0]["complaint_id"] == "b0"
        and lines[0]["error"] == "INVALID_ARGUMENT"
    )
    assert lines[1]["index"] == 1 and lines[1]["decision"]["complaint_id"] == "b1"
