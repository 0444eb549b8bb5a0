"""Worker memory across many decisions: ``python -m bench.memory --decisions N --every K``.

Runs in its own process, so its RSS is a worker's: the reference pack loaded the way ``fenliu serve``
loads it (``Triage.from_path``, memoized as in production unless ``--no-memo``), then N *distinct*
complaints from the corpus generator (drawn lazily, never repeated), each turned into a
``TriageRequest`` and handed to the gRPC servicer's ``decide_one`` (proto → complaint, decision, decision
→ proto: everything a worker does for a call but the transport). RSS is sampled every K decisions; the
last line printed is a JSON summary (samples, peak from VmHWM, the cache's size and hit rate, and
whether a time cap stopped it early).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "service")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench import corpus  # noqa: E402
from fenliu import Triage, complaint_from_dict  # noqa: E402


def _status(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--every", type=int, default=100_000)
    ap.add_argument("--no-memo", action="store_true")
    ap.add_argument("--max-seconds", type=float, default=0.0, help="stop early after this long (0: never)")
    ap.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED + 1)
    args = ap.parse_args(argv)

    triage = Triage.from_path(ROOT / "rules" / "wushen", memoize=not args.no_memo)
    decider = triage.decider
    assert decider is not None
    rng = random.Random(args.seed)
    try:
        from fenliu._proto.fenliu.v1 import triage_pb2 as pb
        from fenliu.serving import convert
        from fenliu.serving.server import TriageServicer

        servicer = TriageServicer(triage)

        def call(data: dict[str, Any]) -> None:
            request = pb.TriageRequest(complaint=convert.complaint_to_proto(data))
            servicer.Triage(request, None)  # type: ignore[arg-type]  # a corpus complaint: no error, no context

        path = "servicer"
    except ImportError:  # no gRPC server module: the decision and its JSON form

        def call(data: dict[str, Any]) -> None:
            triage.decide(complaint_from_dict(data)).to_dict()

        path = "decide"
    try:  # collect as a serving worker does
        from fenliu.serving.supervisor import tune_gc

        tune_gc()
    except ImportError:
        pass
    samples = [(0, round(_status("VmRSS"), 1))]
    t0 = time.perf_counter()
    capped = False
    done = 0
    for i in range(args.decisions):
        call(corpus.complaint(i, rng))
        done = i + 1
        if done % args.every == 0:
            samples.append((done, round(_status("VmRSS"), 1)))
            print(
                json.dumps(
                    {
                        "decisions": done,
                        "rss_mb": samples[-1][1],
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                ),
                flush=True,
            )
            if args.max_seconds and time.perf_counter() - t0 > args.max_seconds and done < args.decisions:
                capped = True
                break
    summary = {
        "decisions": done,
        "seconds": round(time.perf_counter() - t0, 1),
        "samples": samples,
        "peak_mb": round(_status("VmHWM"), 1),
        "memoize": not args.no_memo,
        "path": path,
        "cache_entries": decider.memory_nodes,
        "cache_size": decider._cache_size,
        "hit_rate": round(decider.cache_hits / max(1, done), 4),
        "capped": capped,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
