"""In-process measurements: fenliu and ZEN side by side, where a decision's time goes, pack growth, reload.

Time is this process's CPU time (``time.process_time``), not the wall clock: on a shared machine the
wall clock mostly measures the neighbours. Every comparison is also interleaved: each round runs every
configuration once, in the same order, and the median over rounds is reported, so that what is left of
the noise (caches, frequency) hits all configurations alike.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import genpack, zen_compare
from fenliu import Complaint, Decider, Pack, complaint_from_dict, load_pack
from fenliu.serving import convert

ROOT = Path(__file__).resolve().parents[1]
WUSHEN = ROOT / "rules" / "wushen"


def per_second(fn: Callable[[], Any], n: int) -> float:
    """Decisions per CPU-second of this process: what other processes on a shared machine do to the wall
    clock is left out (their effect on caches is not)."""
    t0 = time.process_time()
    fn()
    return n / max(time.process_time() - t0, 1e-9)


@dataclass
class Config:
    name: str
    run: Callable[[], float]  # one timed pass; returns decisions per second
    rates: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else 0.0


def interleave(configs: Sequence[Config], rounds: int) -> None:
    for _ in range(rounds):
        for c in configs:
            c.rates.append(c.run())


# ----------------------------------------------------------------------------------------------------
# fenliu and ZEN on the reference pack


def engines(complaints: list[Complaint], rounds: int, pack: Pack | None = None) -> dict[str, Any]:
    """Decisions per second for every configuration, and the memo cache hit rate of a cold pass."""
    pack = pack or load_pack(WUSHEN)
    zen = zen_compare.zen_engine()
    n = len(complaints)
    plain = Decider(pack, memoize=False)
    # The text step runs before either engine (part ``text`` measures it): both get its fields.
    complaints = [plain.enrichment(c) for c in complaints]
    warm = {False: Decider(pack), True: Decider(pack)}
    for d in warm.values():  # warm: every class already seen once
        for c in complaints:
            d.outcome(c)
    hit_rates: list[float] = []
    stage_rates: list[float] = []

    def fenliu(d: Decider, trace: bool) -> float:
        return per_second(lambda: [d.decide(c).to_dict(trace=trace) for c in complaints], n)

    def cold(trace: bool) -> float:
        d = Decider(pack)
        try:
            rate = fenliu(d, trace)
            hit_rates.append(d.cache_hits / n)
            hits, misses = getattr(d, "stage_hits", 0), getattr(d, "stage_misses", 0)
            if hits + misses:  # the engine memoizes per stage too: stages answered without the engine
                stage_rates.append(hits / (hits + misses))
            return rate
        finally:
            d.close()

    def zen_pass(trace: bool) -> float:
        return per_second(lambda: [zen_compare.zen_evaluate(zen, c, trace) for c in complaints], n)

    configs = [
        Config("fenliu memo=off trace=off", lambda: fenliu(plain, False)),
        Config("fenliu memo=off trace=on", lambda: fenliu(plain, True)),
        Config("fenliu memo=cold trace=off", lambda: cold(False)),
        Config("fenliu memo=cold trace=on", lambda: cold(True)),
        Config("fenliu memo=warm trace=off", lambda: fenliu(warm[False], False)),
        Config("fenliu memo=warm trace=on", lambda: fenliu(warm[True], True)),
        Config("zen trace=off", lambda: zen_pass(False)),
        Config("zen trace=on", lambda: zen_pass(True)),
    ]
    interleave(configs, rounds)
    for d in (plain, *warm.values()):
        d.close()
    return {
        "rates": {c.name: c.median for c in configs},
        "all": {c.name: c.rates for c in configs},
        "cold_hit_rate": statistics.median(hit_rates) if hit_rates else 0.0,
        "cold_stage_hit_rate": statistics.median(stage_rates) if stage_rates else None,
        "n": n,
        "rounds": rounds,
    }


# ----------------------------------------------------------------------------------------------------
# Where a decision's time goes


def breakdown(
    data: list[dict[str, Any]], rounds: int = 3, pack: Pack | None = None
) -> list[tuple[str, float]]:
    """Microseconds per complaint for each step of a decision and of a gRPC call's conversions (best of
    ``rounds``: these are costs, not throughputs)."""
    pack = pack or load_pack(WUSHEN)
    complaints = [complaint_from_dict(x) for x in data]
    d = Decider(pack, memoize=False)
    interp = Decider(pack, backend="python", memoize=False)
    memo = Decider(pack)
    cp = d.compiled
    keys = [cp.read(c)[0] for c in complaints]
    for c in complaints:
        memo.outcome(c)
    decisions = [d.decide(c) for c in complaints]
    protos = [convert.complaint_to_proto(x) for x in data]
    n = len(complaints)

    # The rules each stage matched, recorded once, so the pipeline can be replayed without an engine.
    def recorder(rec: dict[int, list[Any]]) -> Callable[..., list[Any]]:
        return lambda plan, fact: rec.setdefault(plan.index, d._python.matches(plan, fact))

    def replayer(rec: dict[int, list[Any]]) -> Callable[..., list[Any]]:
        return lambda plan, fact: list(rec[plan.index])

    answers: list[dict[int, list[Any]]] = []
    for c, k in zip(complaints, keys, strict=True):
        rec: dict[int, list[Any]] = {}
        d._walk(c, k, recorder(rec), False)
        answers.append(rec)
    replayers = [replayer(rec) for rec in answers]

    def replay() -> None:
        for c, k, match in zip(complaints, keys, replayers, strict=True):
            d._finish(*d._walk(c, k, match, False), bool(k[1]))

    rows: list[tuple[str, Callable[[], Any]]] = [
        (
            "complaint_from_proto (validate a gRPC request)",
            lambda: [convert.complaint_from_proto(p) for p in protos],
        ),
        ("complaint_from_dict (validate JSON)", lambda: [complaint_from_dict(x) for x in data]),
        (
            "read: normalize text, find keywords, class key",
            lambda: [cp.read(c) for c in complaints],
        ),
        (
            "values for the engine (a memo miss only)",
            lambda: [cp.values(c, k) for c, k in zip(complaints, keys, strict=True)],
        ),
        ("outcome, memo hit (read + walk the memo graph)", lambda: [memo.outcome(c) for c in complaints]),
        (
            "pipeline, matches replayed from a table (facts, resolution, trace, guidance; no engine)",
            replay,
        ),
        (
            "pipeline with durable_rules matching",
            lambda: [
                d._finish(*d._evaluate(c, k, memo=False), bool(k[1]))
                for c, k in zip(complaints, keys, strict=True)
            ],
        ),
        (
            "pipeline with the plain interpreter",
            lambda: [
                interp._finish(*interp._evaluate(c, k, memo=False), bool(k[1]))
                for c, k in zip(complaints, keys, strict=True)
            ],
        ),
        (
            "decide(), memo off (features + durable pipeline + Decision)",
            lambda: [d.decide(c) for c in complaints],
        ),
        ("Decision.to_dict(trace=False)", lambda: [x.to_dict() for x in decisions]),
        ("Decision.to_dict(trace=True)", lambda: [x.to_dict(trace=True) for x in decisions]),
        (
            "decision_to_proto(trace=False), outcome converted before",
            lambda: [convert.decision_to_proto(x) for x in decisions],
        ),
        (
            "decision_to_proto(trace=True), outcome converted before",
            lambda: [convert.decision_to_proto(x, trace=True) for x in decisions],
        ),
        (
            "decision_to_wire(trace=False), serialized as the servicer answers",
            lambda: [convert.decision_to_wire(x) for x in decisions],
        ),
    ]
    out = []
    for name, fn in rows:
        fn()  # warm: caches filled as in a running worker
        best = min(_seconds(fn) for _ in range(rounds))
        out.append((name, best / n * 1e6))
    # A new outcome (every memo miss) converted for the first time: fresh decisions each round, untimed.
    for trace in (False, True):
        times = []
        for _ in range(rounds):
            fresh = [d.decide(c) for c in complaints]
            times.append(
                _seconds(
                    lambda fresh=fresh, trace=trace: [
                        convert.decision_to_proto(x, trace=trace) for x in fresh
                    ]
                )
            )
        out.append((f"decision_to_proto(trace={trace}), a new outcome (memo miss)", min(times) / n * 1e6))
    for x in (d, interp, memo):
        x.close()
    return out


def servicer_call(
    pack: Pack | None = None, *, warm: int = 10_000, n: int = 2_000, rounds: int = 3
) -> dict[str, Any]:
    """CPU µs of what a worker does for one unary call besides gRPC itself: the servicer's Triage handler
    (validation, the decision, its conversion) and its serializer, if it has one, on requests parsed
    from their bytes as gRPC hands them over (trace off).

    ``new``: complaints not seen before, after ``warm`` others (a worker that has been serving a while);
    each round sends its own. ``seen``: the same complaints again, every class and outcome remembered, so
    the memo graph answers each at once: the least this design can cost per call.
    """
    from bench import corpus
    from fenliu import Triage
    from fenliu._proto.fenliu.v1 import triage_pb2 as pb
    from fenliu.serving.server import TriageServicer

    def requests(count: int, seed: int) -> list[Any]:
        return [
            pb.TriageRequest.FromString(
                pb.TriageRequest(complaint=convert.complaint_to_proto(x)).SerializeToString()
            )
            for x in corpus.generate(count, seed=seed)
        ]

    decider = Decider(pack or load_pack(WUSHEN))
    handler = TriageServicer(Triage(decider)).handlers()["Triage"]
    triage, serialize = handler.unary_unary, handler.response_serializer or bytes

    def call(batch: list[Any]) -> float:
        def run() -> None:
            for r in batch:
                serialize(triage(r, None))  # valid complaints: the context is never used

        return _seconds(run) / len(batch) * 1e6

    call(requests(warm, corpus.DEFAULT_SEED + 50_000))
    new, seen = [], []
    for i in range(rounds):
        batch = requests(n, corpus.DEFAULT_SEED + 60_000 + i)
        new.append(call(batch))
        seen.append(min(call(batch) for _ in range(2)))
    decider.close()
    return {"warm": warm, "n": n, "new": statistics.median(new), "seen": statistics.median(seen)}


def _seconds(fn: Callable[[], Any]) -> float:
    """CPU seconds of this process (see :func:`per_second`)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def durable_share(data: list[dict[str, Any]], pack: Pack | None = None) -> dict[str, float]:
    """Of the durable matching, how much is the C engine, JSON and the adapter's Python (µs/decision)."""
    from fenliu.engine import _durable

    pack = pack or load_pack(WUSHEN)
    d = Decider(pack, memoize=False)
    matcher = d.matcher
    assert isinstance(matcher, _durable.DurableMatcher)
    complaints = [complaint_from_dict(x) for x in data]
    per_decision: list[list[dict[str, Any]]] = []  # the facts each decision asserts, in order

    def recorder(facts: list[dict[str, Any]]) -> Callable[..., list[Any]]:
        def match(plan: Any, fact: dict[str, Any]) -> list[Any]:
            facts.append({_durable.STEP_FIELD: plan.name, **fact})  # as the adapter asserts it
            return d._python.matches(plan, fact)

        return match

    for c in complaints:
        facts: list[dict[str, Any]] = []
        key = d.compiled.read(c)[0]
        d._walk(c, key, recorder(facts), False)
        per_decision.append(facts)
    n = len(complaints)
    ruleset = matcher.ruleset
    bodies = [
        [
            _durable._dumps_fact(
                {**f, "sid": _durable.SESSION_ID, "id": f"f{i + 1}", _durable.KIND_FIELD: "f"}
            )
            for i, f in enumerate(facts)
        ]
        for facts in per_decision
    ]
    eng = _durable._engine

    def c_only() -> None:  # as the adapter does it: one assert per stage, then the facts retracted
        h = ruleset._handle
        with _durable.ENGINE_LOCK:
            for decision in bodies:
                for b in decision:
                    _code, state = eng.assert_fact(h, b)[:2]
                    r = eng.start_action_for_state(h, state)
                    while r:
                        r = eng.complete_and_start_action(h, state)
                for b in reversed(decision):
                    eng.retract_fact(h, b)
        ruleset._state = True  # the engine holds a state now: the ruleset deletes it when closed

    def adapter() -> None:
        for facts in per_decision:
            with ruleset.session() as s:
                for f in facts:
                    s.fire(f)

    def dumps() -> None:
        for facts in per_decision:
            for f in facts:
                _durable._dumps_fact(f)

    out = {
        "facts asserted per decision (a count)": sum(map(len, per_decision)) / n,
        "C engine calls only (assert, actions, retract)": min(_seconds(c_only) for _ in range(3)) / n * 1e6,
        "adapter: session + JSON + C calls + rule names": min(_seconds(adapter) for _ in range(3)) / n * 1e6,
        "JSON of the facts alone (as the adapter writes them)": min(_seconds(dumps) for _ in range(3))
        / n
        * 1e6,
    }
    d.close()
    return out


# ----------------------------------------------------------------------------------------------------
# Cost as the pack grows


def growth(complaints: list[Complaint], sizes: Sequence[int], rounds: int) -> dict[int, dict[str, float]]:
    """µs per decision (decide + to_dict) for generated packs, memo off and memo cold."""
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fenliu-genpack-") as tmp:
        packs = {}
        for n in sizes:
            t0 = time.perf_counter()
            packs[n] = load_pack(genpack.write_pack(n, Path(tmp) / f"gen{n}"))
            d = Decider(packs[n], memoize=False)
            results[n] = {
                "load_compile_ms": (time.perf_counter() - t0) * 1000,
                "stages": len(packs[n].stages),
                "rules": len(packs[n].rules),
            }
            d.close()
        plain = {n: Decider(p, memoize=False) for n, p in packs.items()}
        hits: dict[int, list[float]] = {n: [] for n in sizes}
        fired: dict[int, float] = {}

        def off(n: int) -> float:
            return per_second(lambda: [plain[n].decide(c).to_dict() for c in complaints], len(complaints))

        def cold(n: int) -> float:
            d = Decider(packs[n])
            try:
                rate = per_second(lambda: [d.decide(c).to_dict() for c in complaints], len(complaints))
                hits[n].append(d.cache_hits / len(complaints))
                return rate
            finally:
                d.close()

        configs = []
        for n in sizes:
            configs.append(Config(f"{n} off", lambda n=n: off(n)))
            configs.append(Config(f"{n} cold", lambda n=n: cold(n)))
        interleave(configs, rounds)
        for n in sizes:
            fired[n] = sum(len(plain[n].outcome(c).trace) for c in complaints) / len(complaints)
            plain[n].close()
        for c in configs:
            n, kind = c.name.split()
            results[int(n)][f"us_{kind}"] = 1e6 / c.median
        for n in sizes:
            results[n]["cold_hit_rate"] = statistics.median(hits[n]) if hits[n] else 0.0
            results[n]["rules_fired"] = fired[n]
    return results


# ----------------------------------------------------------------------------------------------------
# Load and reload


def reload_times(repeats: int, path: Path = WUSHEN) -> dict[str, float]:
    """Milliseconds: a first load (``Triage.from_path``), a reload (``Triage.load``: load, compile, lint,
    the pack's own cases, swap; median of ``repeats``), and the parts of a reload."""
    from fenliu import Triage, run_cases

    t0 = time.perf_counter()
    triage = Triage.from_path(path)
    first = (time.perf_counter() - t0) * 1000
    loads = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = triage.load(path)
        loads.append((time.perf_counter() - t0) * 1000)
        if not result.ok:
            raise RuntimeError(result.summary())
    t0 = time.perf_counter()
    pack = load_pack(path)
    t1 = time.perf_counter()
    d = Decider(pack)
    t2 = time.perf_counter()
    try:
        from fenliu.authoring import lint

        lint.lint(pack, d.compiled)
    except ImportError:  # pragma: no cover
        pass
    t3 = time.perf_counter()
    report = run_cases(pack, d)
    t4 = time.perf_counter()
    d.close()
    return {
        "first_load_ms": first,
        "reload_ms": statistics.median(loads),
        "cases": float(report.total),
        "parse_ms": (t1 - t0) * 1000,
        "compile_ms": (t2 - t1) * 1000,
        "lint_ms": (t3 - t2) * 1000,
        "cases_ms": (t4 - t3) * 1000,
    }
