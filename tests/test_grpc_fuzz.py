"""Fuzzing the gRPC service with hypothesis: over 10,000 generated complaints in all.

Whatever arrives, the server answers: a decision, or INVALID_ARGUMENT naming the bad fields (or, for
bytes that are no message at all, saying so). Never INTERNAL or UNKNOWN, never a crash.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fenliu import Complaint, ComplaintError, Triage, complaint_from_dict, load_pack
from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.domain.model import COMPLAINT_BOOLS, MAX_ID
from fenliu.serving import convert
from fenliu.serving.server import _MIRROR, status_to_dict
from grpc_helpers import PACK, bad_fields, error_of, serving, stub_for
from strategies import complaints as valid_complaints

FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
TRIAGE = "/fenliu.v1.TriageService/Triage"
COUNT = {"unary": 0, "stream": 0, "raw": 0, "bytes": 0}

STRING_FIELDS = ("id", "title", "text", "category_hint", "existing_case_id")
ENUM_FIELDS = tuple(convert.COMPLAINT_ENUM_TYPES)
BOOL_FIELDS = COMPLAINT_BOOLS
DAY = 86_400
#: google.protobuf.Timestamp's range, and received_at's: 90 days of deadlines and a day of offset inside it
TIMESTAMP_MIN, TIMESTAMP_MAX = -62135596800, 253402300799
FIRST_SECOND = TIMESTAMP_MIN + DAY
LAST_SECOND = TIMESTAMP_MAX - 92 * DAY
WORDS = [
    "邻居",
    "排水",
    "工资",
    "农民工",
    "草场",
    "拆迁",
    "低保",
    "医院",
    "车祸",
    "煤矿",
    "离婚",
    "学校",
    "物业",
]


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with serving(Triage.from_path(str(PACK))) as (address, _):
        yield address
        # the server is still there and healthy after all of it
        with grpc.insecure_channel(address) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        print(f"\nfuzzed complaints: {COUNT} total {sum(COUNT.values())}")


@pytest.fixture(scope="module")
def stub(target: str) -> Iterator[Any]:
    with stub_for(target) as s:
        yield s


@pytest.fixture(scope="module")
def raw(target: str) -> Iterator[Any]:
    """Triage taking and giving raw bytes (identity serializers)."""
    with grpc.insecure_channel(target) as channel:
        yield channel.unary_unary(TRIAGE)


# ----------------------------------------------------------------------------------------------------
# Strategies

control = st.characters(min_codepoint=0, max_codepoint=0x1F)
texts = st.one_of(
    st.just(""),
    st.text(max_size=40),  # any Unicode but lone surrogates (proto strings cannot hold them)
    st.text(alphabet=control, max_size=10),
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map("，".join),
    st.builds(
        lambda ch, n: ch * n,
        st.sampled_from(["a", "文", "\x00", "\u200b", "\x7f", " ", "\U0001f600"]),
        st.integers(0, 25_000),
    ),
)
#: Personal data typed where it does not belong: refused in case numbers and region codes.
personal = st.sampled_from(["13800138000", "150627199001011234", "15062719900101123X", "150627900101123"])
good_case_ids = st.sampled_from(["WS-2026-0137", "XF2026-0001", "乌信〔2026〕12号", " CASE-1 "])
case_ids = st.one_of(good_case_ids, good_case_ids, texts, personal)  # valid half of the time
good_codes = st.sampled_from(["150626", "150626100", "150626100201", "001", " 150626 "])
bad_codes = st.sampled_from(["15062", "1506261", "1506261002"])  # digits, but of no code's length
region_codes = st.one_of(good_codes, good_codes, good_codes, good_codes, bad_codes, texts, personal)
point_codes = st.one_of(good_codes, good_codes, bad_codes, texts, personal)
ints = st.one_of(st.integers(-3, 50), st.integers(-(2**63), 2**63 - 1))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 2e6))
enum_numbers = st.one_of(st.integers(0, 8), st.integers(-(2**31), 2**31 - 1))


@st.composite
def complaints(draw: st.DrawFn) -> Any:
    c = pb.Complaint()
    for name in STRING_FIELDS:
        if draw(st.booleans()):
            setattr(c, name, draw(case_ids if name == "existing_case_id" else texts))
    if draw(st.integers(0, 3)) > 0:  # mostly keep some words so that many complaints are valid
        c.text = "，".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4)))
        c.id = c.id if 0 < len(c.id) <= MAX_ID and "\x00" not in c.id and c.id.strip() else "ok-id"
    for name in ENUM_FIELDS:
        if draw(st.booleans()):
            setattr(c, name, draw(enum_numbers))
    for name in BOOL_FIELDS:
        setattr(c, name, draw(st.booleans()))
    if draw(st.booleans()):
        c.people_involved = draw(ints)
    if draw(st.booleans()):
        c.repeat_visits = draw(ints)
    if draw(st.booleans()):
        c.amount_yuan = draw(floats)
    if draw(st.booleans()):
        c.region.SetInParent()
        for f in ("banner_code", "township_code", "village_code"):
            if draw(st.booleans()):
                setattr(c.region, f, draw(region_codes))
    if draw(st.integers(0, 3)) == 0:
        c.receiving_point.SetInParent()
        if draw(st.booleans()):
            c.receiving_point.code = draw(point_codes)
        if draw(st.booleans()):
            c.receiving_point.level = draw(st.one_of(st.integers(0, 4), enum_numbers))
    if draw(st.booleans()):
        c.complainant.SetInParent()
        for f in ("name", "id_number", "phone"):
            if draw(st.booleans()):
                setattr(c.complainant, f, draw(texts))
    if draw(st.booleans()):
        c.received_at.seconds = draw(
            st.one_of(
                st.integers(0, 2_000_000_000),
                st.integers(-(2**63), 2**63 - 1),
                st.integers(LAST_SECOND - 200 * DAY, TIMESTAMP_MAX + DAY),  # deadlines past year 9999
                st.integers(TIMESTAMP_MIN - DAY, FIRST_SECOND + DAY),
            )
        )
        c.received_at.nanos = draw(st.one_of(st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1)))
    return c


def _must_be_named(c: Any) -> set[str]:
    """Bad fields any validator must name, judged without fenliu's converter."""
    named: set[str] = set()
    if not c.id.strip():
        named.add("complaint.id")
    for f in ("people_involved", "repeat_visits"):
        if getattr(c, f) < 0:
            named.add(f"complaint.{f}")
    if math.isnan(c.amount_yuan) or c.amount_yuan < 0 or math.isinf(c.amount_yuan):
        named.add("complaint.amount_yuan")
    for f in ENUM_FIELDS:
        if getattr(c, f) not in convert.COMPLAINT_ENUM_TYPES[f].DESCRIPTOR.values_by_number:
            named.add(f"complaint.{f}")
    for f, lengths in (("banner_code", (6,)), ("township_code", (3, 9)), ("village_code", (3, 12))):
        code = getattr(c.region, f).strip()
        if code and not (code.isascii() and code.isdigit() and len(code) in lengths):
            named.add(f"complaint.region.{f}")
    if c.receiving_point.level not in pb.Tier.DESCRIPTOR.values_by_number:
        named.add("complaint.receiving_point.level")
    point = c.receiving_point.code.strip()
    if point and not (point.isascii() and point.isdigit() and len(point) in (6, 9, 12)):
        named.add("complaint.receiving_point.code")
    case = c.existing_case_id.strip()
    if case and (re.fullmatch(r"1[3-9][0-9]{9}|[0-9]{17}[0-9Xx]|[0-9]{15}", case) or " " in case):
        named.add("complaint.existing_case_id")
    if c.HasField("received_at") and not (
        0 <= c.received_at.nanos <= 999_999_999 and FIRST_SECOND <= c.received_at.seconds <= LAST_SECOND
    ):
        named.add("complaint.received_at")
    return named


def _expected_fields(c: Any) -> set[str] | None:
    """None if fenliu's own validation accepts the complaint, else the fields it names."""
    try:
        convert.complaint_from_proto(c)
    except ComplaintError as e:
        return {"complaint." + v.field if v.field else "complaint" for v in e.violations}
    return None


# ----------------------------------------------------------------------------------------------------
# Unary


@settings(FUZZ, max_examples=3000)
@given(c=complaints(), trace=st.booleans())
def test_fuzz_unary_complaints_get_decision_or_invalid_argument(stub: Any, c: Any, trace: bool) -> None:
    COUNT["unary"] += 1
    expected = _expected_fields(c)
    try:
        resp = stub.Triage(pb.TriageRequest(complaint=c, include_trace=trace), timeout=30)
    except grpc.RpcError as e:
        err = error_of(e)
        assert err["code"] == "INVALID_ARGUMENT", err
        assert err["reason"] == "INVALID_COMPLAINT"
        fields = bad_fields(err)
        assert fields == expected
        assert _must_be_named(c) <= fields
        return
    assert expected is None, expected
    assert not _must_be_named(c)
    assert resp.decision.complaint_id == c.id
    assert resp.decision.color and resp.decision.tier and resp.decision.stage
    assert bool(resp.decision.trace) == trace


# ----------------------------------------------------------------------------------------------------
# Streams


@settings(FUZZ, max_examples=700)
@given(batch=st.lists(complaints(), min_size=1, max_size=8))
def test_fuzz_stream_every_complaint_answered_in_order(stub: Any, batch: list[Any]) -> None:
    COUNT["stream"] += len(batch)
    items = list(stub.TriageStream(iter([pb.TriageStreamRequest(complaint=c) for c in batch]), timeout=60))
    assert [i.index for i in items] == list(range(len(batch)))
    for c, item in zip(batch, items, strict=True):
        expected = _expected_fields(c)
        if expected is None:
            assert item.WhichOneof("result") == "decision"
            assert item.complaint_id == item.decision.complaint_id == c.id
        else:
            assert item.WhichOneof("result") == "error"
            err = status_to_dict(item.error)
            assert err["code"] == "INVALID_ARGUMENT" and bad_fields(err) == expected
            if "complaint.id" not in expected:
                assert item.complaint_id == c.id


# ----------------------------------------------------------------------------------------------------
# Raw bytes


@settings(FUZZ, max_examples=2500)
@given(data=st.one_of(st.binary(max_size=300), st.binary(min_size=1, max_size=8)))
def test_fuzz_raw_bytes_invalid_argument_never_internal(raw: Any, data: bytes) -> None:
    COUNT["raw"] += 1
    try:
        raw(data, timeout=30)
    except grpc.RpcError as e:
        err = error_of(e)
        assert err["code"] == "INVALID_ARGUMENT", err
        assert err["reason"] in ("MALFORMED_REQUEST", "INVALID_COMPLAINT")
        if err["reason"] == "MALFORMED_REQUEST":
            assert "not a valid fenliu.v1.TriageRequest" in err["message"]


invalid_utf8 = st.sampled_from(
    [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe6\x96"]
)


@st.composite
def byte_strings(draw: st.DrawFn) -> bytes:
    """Raw bytes for a string field: valid UTF-8 (with control characters), or not."""
    good = draw(st.text(max_size=12)).encode("utf-8")
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(good)))
        return good[:cut] + draw(invalid_utf8) + good[cut:]
    return good


@settings(FUZZ, max_examples=2500)
@given(
    values=st.dictionaries(
        st.sampled_from([*STRING_FIELDS, "region.village_code", "region.township_code", "complainant.phone"]),
        byte_strings(),
        min_size=1,
    ),
    junk=st.binary(max_size=3),
    rng=st.randoms(use_true_random=False),
)
def test_fuzz_invalid_utf8_in_raw_bytes_names_fields(
    raw: Any, values: dict[str, bytes], junk: bytes, rng: random.Random
) -> None:
    COUNT["bytes"] += 1
    req = _MIRROR["TriageRequest"]()
    req.complaint.text = "邻居家排水".encode()
    req.complaint.id = b"bytes-1"
    for path, value in values.items():
        msg = req.complaint
        *parents, leaf = path.split(".")
        for p in parents:
            msg = getattr(msg, p)
        setattr(msg, leaf, value)
    data = req.SerializeToString()
    corrupt = bool(junk) and rng.random() < 0.3
    if corrupt:  # and sometimes break the framing too
        pos = rng.randrange(len(data) + 1)
        data = data[:pos] + junk + data[pos:]
    try:
        raw(data, timeout=30)
    except grpc.RpcError as e:
        err = error_of(e)
        assert err["code"] == "INVALID_ARGUMENT", err
        if corrupt:
            return
        not_utf8 = set()
        for path, value in values.items():
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                not_utf8.add(f"complaint.{path}")
        assert not_utf8 <= bad_fields(err), err
        for v in err.get("field_violations", []):
            if v["field"] in not_utf8:
                assert v["description"] == "is not valid UTF-8"
        return
    assert all(_utf8(v) for v in values.values()) or corrupt


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ----------------------------------------------------------------------------------------------------
# The shortcut for plainly valid complaints is the full validation, only faster

PLAIN = {"taken": 0, "valid": 0}


@settings(FUZZ, max_examples=6_000)
@given(complaints())
def test_plainly_valid_shortcut_equals_full_validation(c: Any) -> None:
    now = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    try:
        full: Complaint | None = convert._complaint_from_proto_fully(c, now)
    except ComplaintError:
        full = None
    fast = convert._complaint_if_plainly_valid(c, now)
    PLAIN["valid"] += full is not None
    if fast is not None:
        PLAIN["taken"] += 1
        assert full is not None, "the shortcut accepted what the validation refuses"
        assert fast == full
        assert [type(getattr(fast, f.name)) for f in fields(fast)] == [
            type(getattr(full, f.name)) for f in fields(full)
        ]
        assert convert.complaint_from_proto(c, now=now) == full


EDGES = [
    TIMESTAMP_MIN - 1,
    TIMESTAMP_MIN,
    FIRST_SECOND - 1,
    FIRST_SECOND,
    0,
    LAST_SECOND,
    LAST_SECOND + 1,
    TIMESTAMP_MAX - 15 * DAY,  # 9999-12-17: the first whose resolve_by (15 days) overflowed
    TIMESTAMP_MAX,
    TIMESTAMP_MAX + 1,
]


@pytest.mark.parametrize("seconds", EDGES)
@pytest.mark.parametrize("nanos", [0, 999, 1_000, 999_999_999])
def test_shortcut_reads_timestamps_at_the_edges_of_their_range_as_the_validation_does(
    seconds: int, nanos: int
) -> None:
    c = pb.Complaint(id="t", text="拖欠工资")
    c.received_at.seconds, c.received_at.nanos = seconds, nanos
    fast = convert._complaint_if_plainly_valid(c, None)
    try:
        full: Complaint | None = convert._complaint_from_proto_fully(c, None)
    except ComplaintError:
        full = None
    in_range = FIRST_SECOND <= seconds <= LAST_SECOND
    assert (fast is not None) == (full is not None) == in_range
    if fast is not None and full is not None:
        assert (fast.received_at, fast.received_at.tzinfo) == (full.received_at, full.received_at.tzinfo)
        assert fast.received_at.microsecond == nanos // 1000


@pytest.mark.parametrize("seconds", EDGES)
def test_received_at_at_the_edges_decided_or_refused_naming_it(stub: Any, seconds: int) -> None:
    """Every timestamp accepted yields every deadline; beyond the range: INVALID_ARGUMENT, never INTERNAL."""
    for received in ("RED", "BLUE"):  # RED: 2 h to 15 days; BLUE: up to 15 days; every deadline set
        c = pb.Complaint(id="edge", text="拖欠工资", people_involved=40 if received == "RED" else 1)
        c.received_at.seconds, c.received_at.nanos = seconds, 999_999_999
        in_range = FIRST_SECOND <= seconds <= LAST_SECOND
        try:
            resp = stub.Triage(pb.TriageRequest(complaint=c), timeout=30)
        except grpc.RpcError as e:
            err = error_of(e)
            assert not in_range, err
            assert err["code"] == "INVALID_ARGUMENT" and bad_fields(err) == {"complaint.received_at"}
            (item,) = stub.TriageStream(iter([pb.TriageStreamRequest(complaint=c)]), timeout=30)
            assert bad_fields(status_to_dict(item.error)) == {"complaint.received_at"}
            continue
        assert in_range
        d = convert.decision_from_proto(resp.decision)  # every deadline is a valid Timestamp
        assert d["deadlines"]["first_contact_by"] and d["deadlines"]["resolve_by"]
        for name in ("first_contact_by", "plan_by", "accept_by", "resolve_by"):
            if resp.decision.deadlines.HasField(name):
                ts = getattr(resp.decision.deadlines, name)
                assert c.received_at.seconds < ts.seconds <= TIMESTAMP_MAX - 2 * DAY


def test_shortcut_took_most_valid_complaints() -> None:
    """The property above was not a shortcut that never fires: counted over its examples, in this
    process (pytest-xdist may have run the property in another one: then it runs here first)."""
    if PLAIN["valid"] == 0:
        test_plainly_valid_shortcut_equals_full_validation()
    assert PLAIN["valid"] > 100
    assert PLAIN["taken"] > PLAIN["valid"] * 0.8


@settings(FUZZ, max_examples=2_000)
@given(valid_complaints(load_pack(PACK)))
def test_shortcut_takes_every_valid_complaint_of_the_contract(data: dict[str, Any]) -> None:
    now = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    msg = convert.complaint_to_proto(data)
    fast = convert._complaint_if_plainly_valid(msg, now)
    assert fast is not None
    assert fast == convert._complaint_from_proto_fully(msg, now) == complaint_from_dict(data, now=now)
