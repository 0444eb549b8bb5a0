"""Personal data typed where it does not belong: case numbers and region codes refuse it by format, and
every log line fenliu writes masks anything shaped like an id number or a mobile number."""

from __future__ import annotations

import io
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fenliu import ComplaintError, Triage, complaint_from_dict
from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.domain import personal
from fenliu.domain.personal import ID_MASK, PHONE_MASK, SHORTEST, looks_personal, mask
from fenliu.serving import convert
from fenliu.serving.decision_log import DecisionLog
from fenliu.serving.logs import setup_logging
from grpc_helpers import PACK, ServeProcess, error_of, stub_for

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ID_NUMBER, OLD_ID, PHONE = "150626199012301234", "150626901230123", "13947712345"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("150626199012301234", ID_MASK),
        ("15062619901230123X", ID_MASK),
        ("15062619901230123x", ID_MASK),
        (OLD_ID, ID_MASK),
        ("身份证150626199012301234号", f"身份证{ID_MASK}号"),
        ("１５０６２６１９９０１２３０１２３４", ID_MASK),  # full-width
        (PHONE, PHONE_MASK),
        ("139 4771 2345", PHONE_MASK),
        ("139-4771-2345", PHONE_MASK),
        ("+86 139 4771 2345", PHONE_MASK),
        ("+8613947712345", PHONE_MASK),
        ("电话：13947712345，找老王", f"电话：{PHONE_MASK}，找老王"),
        ("１３９４７７１２３４５", PHONE_MASK),
        # not personal data: kept
        ("WS-2026-0137", "WS-2026-0137"),
        ("12947712345", "12947712345"),  # no mobile starts 12
        ("1394771234", "1394771234"),  # 10 digits
        ("hmac:1394771234512345", "hmac:1394771234512345"),  # part of a longer run
        ("sha256:ab13947712345cd", "sha256:ab13947712345cd"),
        ("2026-12-04T18:07:02.123Z", "2026-12-04T18:07:02.123Z"),
        ("150626100201", "150626100201"),  # a village code
    ],
)
def test_mask_hides_what_is_shaped_like_an_id_number_or_a_mobile(text: str, masked: str) -> None:
    assert mask(text) == masked
    assert looks_personal(text) == (masked in (ID_MASK, PHONE_MASK))


@given(st.text(alphabet="0123456789０１２３４５６７８９+＋ -－Xx８６１３", max_size=SHORTEST + 8))
def test_no_text_shorter_than_a_mobile_number_holds_anything_to_mask(text: str) -> None:
    """``mask`` skips texts under ``SHORTEST`` characters: none of them matches either shape."""
    if len(text) < SHORTEST:
        assert personal.ID_NUMBER.search(text) is None and personal.MOBILE.search(text) is None
    assert mask(text) == personal.MOBILE.sub(PHONE_MASK, personal.ID_NUMBER.sub(ID_MASK, text))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("existing_case_id", ID_NUMBER),
        ("existing_case_id", PHONE),
        ("existing_case_id", "139 4771 2345"),
        ("existing_case_id", "WS 2026 0137"),
        ("existing_case_id", "<script>"),
        ("region.banner_code", PHONE),
        ("region.township_code", ID_NUMBER),
        ("region.village_code", OLD_ID),
        ("region.village_code", "嘎查"),
        ("region.banner_code", "15062"),
        ("region.township_code", "1506261"),
    ],
)
def test_case_numbers_and_region_codes_are_validated_by_format(field: str, value: str) -> None:
    data: dict[str, object] = {"id": "c", "text": "邻居排水"}
    if field.startswith("region."):
        data["region"] = {field[7:]: value}
    else:
        data[field] = value
    with pytest.raises(ComplaintError) as info:
        complaint_from_dict(data, now=NOW)
    assert [v.field for v in info.value.violations] == [field]
    assert value not in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        {"existing_case_id": "WS-2026-0137"},
        {"existing_case_id": "乌信〔2026〕12号"},
        {"existing_case_id": " XF2026-0001 "},
        {"existing_case_id": "   "},
        {"region": {"banner_code": "150626", "township_code": "150626100", "village_code": "150626100201"}},
        {"region": {"township_code": "100", "village_code": "001"}},
        {"complainant": {"id_number": "1506", "phone": "12345"}},  # malformed personal data never refuses
        {"complainant": {"id_number": "15062619901230123Y", "phone": "+86 1394771234"}},
    ],
)
def test_valid_case_numbers_region_codes_and_any_complainant_are_accepted(data: dict[str, object]) -> None:
    complaint_from_dict({"id": "c", "text": "邻居排水", **data}, now=NOW)


def test_json_logs_mask_personal_data_in_every_field_and_the_message() -> None:
    buf = io.StringIO()
    setup_logging("INFO", stream=buf)
    try:
        log = logging.getLogger("fenliu.test")
        log.info(
            "engine_failure", extra={"complaint": PHONE, "nested": {"case": [ID_NUMBER]}, "n": 13947712345}
        )
        log.warning("free text with %s inside", "139-4771-2345")
    finally:
        setup_logging("INFO")
    text = buf.getvalue()
    assert PHONE not in text and ID_NUMBER not in text and "139-4771-2345" not in text
    first, second = (json.loads(x) for x in text.splitlines())
    assert first["complaint"] == PHONE_MASK and first["nested"] == {"case": [ID_MASK]}
    assert first["n"] == PHONE_MASK
    assert second["event"] == f"free text with {PHONE_MASK} inside"


def test_decision_log_masks_personal_data_whatever_field_it_came_in(tmp_path: Path) -> None:
    triage = Triage.from_path(str(PACK))
    complaint = complaint_from_dict(
        {"id": PHONE, "title": f"身份证{ID_NUMBER}", "text": "邻居排水，电话 139 4771 2345"}, now=NOW
    )
    decision = triage.decide(complaint)
    with DecisionLog(
        tmp_path / "d.jsonl", max_bytes=0, backups=0, hash_key=b"k" * 32, redact_text=False
    ) as dl:
        line = dl.line(decision, complaint).decode()
    for secret in (PHONE, ID_NUMBER, "139 4771 2345"):
        assert secret not in line
    entry = json.loads(line)
    assert entry["complaint"]["id"] == PHONE_MASK and entry["decision"]["complaint_id"] == PHONE_MASK
    assert entry["complaint"]["title"] == f"身份证{ID_MASK}"
    assert entry["complaint"]["text"] == f"邻居排水，电话 {PHONE_MASK}"


@pytest.mark.slow
def test_serve_refuses_personal_data_in_case_and_region_and_logs_none(tmp_path: Path) -> None:
    """End to end: errors name the fields without echoing them; no log line the server writes holds them."""
    os.environ["FENLIU_DECISION_LOG_KEY"] = "k" * 32
    try:
        srv = ServeProcess(
            [
                "--rules", str(PACK), "--address", "127.0.0.1:0", "--workers", "1", "--no-watch",
                "--decision-log", str(tmp_path / "d.jsonl"), "--decision-log-keep-text", "--log-level", "DEBUG",
            ],
            tmp_path / "log",
        )  # fmt: skip
    finally:
        del os.environ["FENLIU_DECISION_LOG_KEY"]
    try:
        with stub_for(srv.target) as stub:
            bad = convert.complaint_to_proto(
                {
                    "id": "p1",
                    "text": "邻居排水",
                    "existing_case_id": ID_NUMBER,
                    "region": {"township_code": PHONE},
                }
            )
            with pytest.raises(grpc.RpcError) as info:
                stub.Triage(pb.TriageRequest(complaint=bad), timeout=10)
            err = error_of(info.value)
            assert err["code"] == "INVALID_ARGUMENT"
            assert {v["field"] for v in err["field_violations"]} == {
                "complaint.existing_case_id",
                "complaint.region.township_code",
            }
            assert ID_NUMBER not in json.dumps(err) and PHONE not in json.dumps(err)
            good = convert.complaint_to_proto({"id": PHONE, "text": f"邻居排水，我的身份证号{ID_NUMBER}"})
            assert stub.Triage(pb.TriageRequest(complaint=good), timeout=10).decision.complaint_id == PHONE
    finally:
        srv.stop()
        srv.kill()
    written = (tmp_path / "log").read_text() + (tmp_path / "d.jsonl").read_text()
    assert ID_MASK in written and PHONE_MASK in written
    assert ID_NUMBER not in written and PHONE not in written


# ----------------------------------------------------------------------------------------------------
# Contract v2: a malformed id number or phone is noted, kept, and never refuses the complaint


def _with_check_digit(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


WELL_FORMED_ID = _with_check_digit("15062619800101123")
WRONG_CHECK_DIGIT = WELL_FORMED_ID[:17] + ("0" if WELL_FORMED_ID[17] != "0" else "1")


@pytest.mark.parametrize(
    ("id_number", "phone", "noted"),
    [
        (WELL_FORMED_ID, "13800138000", ()),
        (WELL_FORMED_ID.lower(), "+86 138-0013-8000", ()),
        ("150626800101123", "0477-7654321", ()),  # the old 15-digit form; a fixed line with its area code
        (WRONG_CHECK_DIGIT, "13800138000", ("complainant.id_number",)),
        ("15062619800101", "12345", ("complainant.id_number", "complainant.phone")),
        ("", "138001380", ("complainant.phone",)),
    ],
)
def test_a_malformed_id_number_or_phone_is_noted_by_name_and_the_complaint_decided(
    id_number: str, phone: str, noted: tuple[str, ...]
) -> None:
    triage = Triage.from_path(str(PACK))
    c = complaint_from_dict(
        {"id": "p-1", "text": "老板欠了三个月工钱", "complainant": {"id_number": id_number, "phone": phone}}
    )
    d = triage.decide(c).to_dict(trace=True)
    assert d["category"] == "wage_arrears"
    notes = [n for n in d["notes"] if n.startswith("complainant.")]
    assert [n.split(" ", 1)[0] for n in notes] == list(noted)
    for n in notes:
        assert "malformed" in n and "accepted" in n
        assert id_number not in n or not id_number
        assert phone not in n


def test_the_malformed_note_reaches_a_grpc_client_without_the_value() -> None:
    from grpc_helpers import serving

    c = {
        "id": "p-2",
        "text": "邻居家的排水沟堵了",
        "complainant": {"id_number": WRONG_CHECK_DIGIT, "phone": "555"},
    }
    with serving(Triage.from_path(str(PACK))) as (address, _), stub_for(address) as stub:
        resp = stub.Triage(
            pb.TriageRequest(complaint=convert.complaint_to_proto(c), include_trace=True), timeout=10
        )
        plain = stub.Triage(pb.TriageRequest(complaint=convert.complaint_to_proto(c)), timeout=10)
    notes = [n for n in resp.decision.notes if n.startswith("complainant.")]
    assert [n.split(" ", 1)[0] for n in notes] == ["complainant.id_number", "complainant.phone"]
    assert WRONG_CHECK_DIGIT not in str(resp) and "555" not in " ".join(notes)
    assert plain.decision.category == resp.decision.category and not plain.decision.notes
