"""Profile the decision path with cProfile: ``python -m bench.profiling [--what decide|call] [-n N] [--memo]``.

* ``decide``: ``Decider.decide(c).to_dict(trace=True)`` on N corpus complaints (memo off unless --memo).
* ``call``: what a worker does for one unary call besides gRPC itself — the servicer's ``decide_one``
  (proto → complaint, the decision, decision → proto) on pre-built requests. ``--everything``: as
  ``fenliu serve`` with metrics, the decision log and the SQLite matter store (in a temporary folder).

Prints the functions with the most internal time, and the cumulative time of the top-level steps.
cProfile roughly doubles the cost of Python function calls, so read shares, not absolute times.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "service")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench import corpus  # noqa: E402
from fenliu import Decider, complaint_from_dict, load_pack  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", choices=("decide", "call"), default="decide")
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--memo", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--everything", action="store_true", help="call: metrics, decision log, SQLite store on")
    args = ap.parse_args(argv)
    data = corpus.generate(args.n)
    pack = load_pack(ROOT / "rules" / "wushen")
    prof = cProfile.Profile()
    if args.what == "decide":
        d = Decider(pack, memoize=args.memo)
        complaints = [complaint_from_dict(x) for x in data]
        prof.enable()
        for c in complaints:
            d.decide(c).to_dict(trace=True)
        prof.disable()
    else:
        from fenliu import Triage
        from fenliu._proto.fenliu.v1 import triage_pb2 as pb
        from fenliu.serving import convert
        from fenliu.serving.server import TriageServicer

        triage = Triage(Decider(pack, memoize=args.memo))
        servicer = _servicer_with_everything(triage) if args.everything else TriageServicer(triage)
        requests = [pb.TriageRequest(complaint=convert.complaint_to_proto(x)) for x in data]
        prof.enable()
        for r in requests:
            servicer.decide_one(r, "Triage")
        prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    print(out.getvalue())
    return 0


def _servicer_with_everything(triage: Any) -> Any:
    """The servicer as a worker of ``fenliu serve`` builds it with metrics, the decision log and the
    SQLite matter store on (files in a temporary folder, removed at exit)."""
    import atexit
    import os
    import shutil
    import tempfile

    from fenliu.serving.config import ServeConfig
    from fenliu.serving.matters import open_matters
    from fenliu.serving.server import TriageServicer
    from fenliu.serving.supervisor import build_extensions

    tmp = Path(tempfile.mkdtemp(prefix="fenliu-profile-"))
    atexit.register(shutil.rmtree, tmp, True)
    key = tmp / "key"
    key.write_bytes(os.urandom(32))
    config = ServeConfig(
        metrics_address="127.0.0.1:0",
        decision_log=str(tmp / "decisions.jsonl"),
        decision_log_key_file=str(key),
        store=f"sqlite:///{tmp / 'matters.db'}",
        store_key_file=str(key),
    )
    ext = build_extensions(config, triage)
    return TriageServicer(ext.triage, ext.observers, open_matters(config, metrics=ext.metrics))


if __name__ == "__main__":
    raise SystemExit(main())
