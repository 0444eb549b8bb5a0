"""A client in another language: Node (@grpc/grpc-js, @grpc/proto-loader) calls fenliu from the .proto."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from fenliu import Triage, complaint_from_dict
from grpc_helpers import NODE_DIR, PACK, comparable, pack_complaints, serving

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None, reason="node is not installed: the Node client test needs Node.js >= 18"
)


@pytest.fixture(scope="module")
def node_client() -> str:
    """tests/node/client.js with its dependencies installed (npm ci from package-lock.json)."""
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "node is installed but npm is not: cannot install tests/node's dependencies"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True, timeout=300
        )
    return str(NODE_DIR / "client.js")


@pytest.fixture(scope="module")
def local() -> Triage:
    return Triage.from_path(str(PACK))


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with serving(Triage.from_path(str(PACK))) as (address, _):
        yield address


def _node(client: str, *args: str) -> tuple[int, list[Any]]:
    assert NODE is not None
    proc = subprocess.run([NODE, client, *args], capture_output=True, text=True, timeout=60)
    assert not proc.stderr.strip(), proc.stderr
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_node_unary_triage_matches_local_decide(node_client: str, target: str, local: Triage) -> None:
    for d in pack_complaints()[::40]:
        code, (decision,) = _node(node_client, target, json.dumps(d, ensure_ascii=False), "--trace")
        assert code == 0
        want = comparable(local.decide(complaint_from_dict(d)).to_dict(trace=True))
        assert comparable(decision) == want


def test_node_stream_matches_local_decide_and_reports_bad_items(
    node_client: str, target: str, local: Triage
) -> None:
    complaints = pack_complaints()
    batch: list[dict[str, Any]] = [*complaints, {"id": "bad-1", "people_involved": -1}]
    code, items = _node(node_client, target, json.dumps(batch, ensure_ascii=False))
    assert code == 1
    assert [i["index"] for i in items] == list(range(len(batch)))
    for d, item in zip(complaints, items, strict=False):
        assert comparable(item["decision"]) == comparable(local.decide(complaint_from_dict(d)).to_dict())
    last = items[-1]
    assert last["complaint_id"] == "bad-1"
    assert last["error"]["code"] == "INVALID_ARGUMENT" and last["error"]["reason"] == "INVALID_COMPLAINT"
    assert {v["field"] for v in last["error"]["field_violations"]} == {
        "complaint.people_involved",
        "complaint.text",
    }


def test_node_rich_error_names_bad_fields(node_client: str, target: str) -> None:
    code, (err,) = _node(
        node_client, target, json.dumps({"text": "x", "amount_yuan": -5, "channel": "VISIT"})
    )
    assert code == 1
    assert err["code"] == "INVALID_ARGUMENT" and err["domain"] == "fenliu.v1"
    assert {v["field"] for v in err["field_violations"]} == {"complaint.id", "complaint.amount_yuan"}


def test_node_get_rule_pack(node_client: str, target: str) -> None:
    code, (info,) = _node(node_client, target, "--rule-pack")
    assert code == 0 and info["name"] == "wushen" and len(info["categories"]) >= 22
