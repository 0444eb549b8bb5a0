"""A load client for the reload test: calls Triage until told to stop, counting each revision it sees.

Run as a separate process: ``python tests/reload_client.py TARGET STOPFILE OUT``. No retries: during a
reload no call may fail.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import grpc

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
from fenliu.serving import convert

TEXTS = ["邻居家排水淹了院子", "拖欠农民工工资三个月", "草场被占放牧受阻", "煤矿粉尘污染", "说不清楚的事情"]


def main(target: str, stop_file: str, out: str) -> int:
    channel = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
    stub = pb_grpc.TriageServiceStub(channel)
    revisions: dict[str, int] = {}
    failures: list[str] = []
    calls = 0
    while not Path(stop_file).exists():
        complaint = convert.complaint_to_proto(
            {"id": f"r{calls}", "text": TEXTS[calls % len(TEXTS)], "people_involved": calls % 40}
        )
        try:
            if calls % 10 == 9:
                reqs = [pb.TriageStreamRequest(complaint=complaint) for _ in range(5)]
                for item in stub.TriageStream(iter(reqs), timeout=30):
                    rev = item.decision.rule_pack.revision
                    revisions[rev] = revisions.get(rev, 0) + 1
            else:
                resp = stub.Triage(pb.TriageRequest(complaint=complaint), timeout=30)
                rev = resp.decision.rule_pack.revision
                revisions[rev] = revisions.get(rev, 0) + 1
        except grpc.RpcError as e:
            failures.append(f"call {calls}: {e.code().name}: {e.details()}")
        calls += 1
        time.sleep(0.002)
    channel.close()
    Path(out).write_text(
        json.dumps({"calls": calls, "revisions": revisions, "failures": failures[:50]}), "utf-8"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
