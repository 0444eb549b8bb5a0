"""The matter store's part of a call, in one process: ``python -m bench.store_step [-n 3000] [--rounds 2]``.

The servicer's ``decide_one`` (proto in, decision out, as a worker runs it for a unary call, without gRPC
itself) on ``-n`` new corpus complaints, after 300 others as warm-up, with the SQLite matter store off
and on (a fresh file each time, in a temporary folder), the two alternating ``--rounds`` times. It
reports the CPU time of the whole process per call (every thread: the store's own, its checkpoint and
its queue), their ratio, and, with the store on, the CPU time of each step in the thread that runs it
(``time.thread_time``): the sighting (signature and identity hashes), the hand-off to the store's
thread, the recording there, and the decision's write-back. A step is timed by wrapping the function
that does it, which adds about a microsecond a call.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "service")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench import corpus  # noqa: E402
from fenliu import Decider, Triage, load_pack  # noqa: E402

WARM_UP = 300

#: (label, module, owner or "", function): the steps timed with the store on.
STEPS: tuple[tuple[str, str, str, str], ...] = (
    ("sighting (signature, identity hashes)", "fenliu.matter.enricher", "", "sighting_from_complaint"),
    ("hand-off to the store's thread", "fenliu.matter.guard", "GuardedStore", "record"),
    ("recording, in the store's thread", "fenliu.matter.sqlite", "SQLiteStore", "record"),
    ("the decision's write-back", "fenliu.matter.sqlite", "SQLiteStore", "set_decision"),
)


@contextmanager
def timed_steps(spent: dict[str, float]) -> Iterator[None]:
    """Each of :data:`STEPS` adds its thread CPU time to ``spent`` while the block runs."""
    import importlib

    undo: list[Callable[[], object]] = []
    for label, module, owner, name in STEPS:
        target: Any = importlib.import_module(module)
        if owner:
            target = getattr(target, owner)
        original = getattr(target, name)

        def wrapper(*a: Any, _f: Any = original, _label: str = label, **k: Any) -> Any:
            t = time.thread_time()
            try:
                return _f(*a, **k)
            finally:
                spent[_label] += time.thread_time() - t

        setattr(target, name, wrapper)
        undo.append(functools.partial(setattr, target, name, original))
    try:
        yield
    finally:
        for u in reversed(undo):
            u()


def _servicer(pack: Any, folder: Path | None) -> Any:
    from fenliu.serving.config import ServeConfig
    from fenliu.serving.matters import open_matters
    from fenliu.serving.server import TriageServicer
    from fenliu.serving.supervisor import build_extensions

    triage = Triage(Decider(pack, memoize=True))
    if folder is None:
        return TriageServicer(triage)
    key = folder / "key"
    key.write_bytes(os.urandom(32))
    config = ServeConfig(store=f"sqlite:///{folder / 'matters.db'}", store_key_file=str(key))
    ext = build_extensions(config, triage)
    return TriageServicer(ext.triage, ext.observers, open_matters(config, metrics=ext.metrics))


def run(n: int = 3000, rounds: int = 2) -> dict[str, Any]:
    from fenliu._proto.fenliu.v1 import triage_pb2 as pb
    from fenliu.serving import convert

    pack = load_pack(ROOT / "rules" / "wushen")
    data = corpus.generate(n + WARM_UP)
    requests = [pb.TriageRequest(complaint=convert.complaint_to_proto(x)) for x in data]
    per_call: dict[str, list[float]] = {"off": [], "on": []}
    spent: dict[str, float] = collections.defaultdict(float)
    for _ in range(rounds):
        for mode in ("off", "on"):
            folder = Path(tempfile.mkdtemp(prefix="fenliu-bench-store-step-")) if mode == "on" else None
            try:
                servicer = _servicer(pack, folder)
                for r in requests[n:]:
                    servicer.decide_one(r, "Triage")
                steps: dict[str, float] = collections.defaultdict(float)
                with timed_steps(steps) if mode == "on" else nullcontext():
                    t = time.process_time()
                    for r in requests[:n]:
                        servicer.decide_one(r, "Triage")
                    per_call[mode].append((time.process_time() - t) / n * 1e6)
                for label, seconds in steps.items():
                    spent[label] += seconds
            finally:
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
    off, on = (sum(v) / len(v) for v in (per_call["off"], per_call["on"]))
    return {
        "n": n,
        "rounds": rounds,
        "cpu_us": per_call,
        "ratio": on / off if off else 0.0,
        "steps_us": {label: spent.get(label, 0.0) / (n * rounds) * 1e6 for label, *_ in STEPS},
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def render(r: dict[str, Any]) -> str:
    lines = [
        f"{r['n']} new complaints a round, {r['rounds']} rounds, load {r['load']}",
        "",
        "| | CPU per call (each round) |",
        "|---|---|",
        "| store off | " + ", ".join(f"{x:,.0f} µs" for x in r["cpu_us"]["off"]) + " |",
        "| store on (SQLite) | " + ", ".join(f"{x:,.0f} µs" for x in r["cpu_us"]["on"]) + " |",
        "",
        f"on ÷ off: {r['ratio']:.2f}",
        "",
        "| step, store on | thread CPU per call |",
        "|---|---:|",
        *(f"| {label} | {us:,.0f} µs |" for label, us in r["steps_us"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    print(render(run(args.n, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
