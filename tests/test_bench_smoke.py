"""The benchmarks work: each part of ``make bench`` at a tiny size, and ZEN decides exactly as fenliu.

No test here asserts a time or a rate: only that every part runs, returns well-formed numbers, and that
the ZEN graph the benchmark times is equivalent to the reference pack on the whole benchmark corpus.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import corpus, genpack, inprocess, zen_compare  # noqa: E402
from bench.zen import build as zen_build  # noqa: E402

from fenliu import Decider, complaint_from_dict, load_pack  # noqa: E402
from fenliu.domain.model import COLORS  # noqa: E402


@pytest.fixture(scope="module")
def pack() -> Any:
    return load_pack(ROOT / "rules" / "wushen")


@pytest.fixture(scope="module")
def bench_corpus() -> list[Any]:
    from bench import run

    return [complaint_from_dict(x) for x in corpus.generate(run.FULL["corpus"])]


# ---------------------------------------------------------------------------------------------------
# The corpus


def test_corpus_same_seed_same_complaints() -> None:
    assert corpus.generate(300) == corpus.generate(300)
    assert corpus.generate(300) != corpus.generate(300, seed=1)
    assert len({c["id"] for c in corpus.generate(300)}) == 300


def test_corpus_valid_and_covers_categories_colours_exclusions(pack: Any, bench_corpus: list[Any]) -> None:
    assert corpus.categories_in(corpus.generate(2000)) == set(corpus.PHRASES)
    d = Decider(pack, memoize=False)
    outcomes = [d.outcome(c) for c in bench_corpus[:3000]]
    d.close()
    assert {o.category for o in outcomes} == set(pack.categories)  # the 22 and unclassified
    assert {o.color for o in outcomes} == set(COLORS)
    assert {o.exclusion for o in outcomes} == {"", *pack.tables["exclusions"].rows}
    assert {o.stage for o in outcomes} == {"CONSULT", "ASSESS", "MEDIATE", "ARBITRATE", "LITIGATE"}
    assert {o.approach for o in outcomes} == {"", "IMMEDIATE", "DIVERTED", "JOINT"}
    assert any("category_hint is not a category" in n for o in outcomes for n in o.notes)


# ---------------------------------------------------------------------------------------------------
# ZEN


def test_zen_graph_is_current(pack: Any) -> None:
    assert zen_build.render() == zen_compare.GRAPH.read_text(encoding="utf-8"), (
        "bench/zen/wushen.json is stale: run python -m bench.zen.build"
    )


def test_zen_decides_like_fenliu_on_the_whole_bench_corpus(pack: Any, bench_corpus: list[Any]) -> None:
    d = Decider(pack, memoize=False)
    n, diffs = zen_compare.compare(bench_corpus, d, zen_compare.zen_engine())
    d.close()
    assert n == len(bench_corpus)
    assert diffs == [], zen_compare.render_diffs(diffs)


def test_zen_comparison_catches_a_wrong_graph(pack: Any, bench_corpus: list[Any], tmp_path: Path) -> None:
    graph = json.loads(zen_compare.GRAPH.read_text(encoding="utf-8"))
    grade = next(n for n in graph["nodes"] if n["id"] == "grade")
    grade["content"]["rules"][0]["in0"] = ">= 31"  # RED from 31 people instead of 30
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(graph, ensure_ascii=False), encoding="utf-8")
    d = Decider(pack, memoize=False)
    _, diffs = zen_compare.compare(bench_corpus[:2000], d, zen_compare.zen_engine(bad))
    d.close()
    assert diffs and {x["field"] for x in diffs} >= {"color"}


def test_zen_trace_is_returned(bench_corpus: list[Any]) -> None:
    engine = zen_compare.zen_engine()
    r = zen_compare.zen_evaluate(engine, bench_corpus[0], trace=True)
    assert r.get("trace") and "classify" in r["trace"]
    assert not zen_compare.zen_evaluate(engine, bench_corpus[0]).get("trace")


# ---------------------------------------------------------------------------------------------------
# In-process parts at tiny size


def test_engines_tiny(pack: Any, bench_corpus: list[Any]) -> None:
    r = inprocess.engines(bench_corpus[:20], rounds=1, pack=pack)
    assert len(r["rates"]) == 8 and all(v > 0 for v in r["rates"].values())
    assert 0.0 <= r["cold_hit_rate"] <= 1.0


def test_breakdown_tiny(pack: Any) -> None:
    data = corpus.generate(20)
    rows = inprocess.breakdown(data, rounds=1, pack=pack)
    assert rows and all(us > 0 for _, us in rows)
    share = inprocess.durable_share(data, pack=pack)
    assert share["facts asserted per decision (a count)"] == len(pack.stages)


def test_servicer_call_tiny(pack: Any) -> None:
    r = inprocess.servicer_call(pack, warm=20, n=10, rounds=1)
    assert (r["warm"], r["n"]) == (20, 10)
    assert r["new"] > 0 and r["seen"] > 0


@pytest.mark.parametrize("n", genpack.SIZES)
def test_generated_pack_loads_with_exact_size(n: int, tmp_path: Path) -> None:
    p = load_pack(genpack.write_pack(n, tmp_path / f"gen{n}"))
    assert len(p.rules) == n
    d = Decider(p)  # compiles inside the engine's limits
    outcomes = [d.outcome(complaint_from_dict(x)) for x in corpus.generate(200)]
    d.close()
    assert len({o.category for o in outcomes}) > 3  # the keywords match real texts
    assert genpack.build(n) == genpack.build(n)


def test_growth_tiny(bench_corpus: list[Any]) -> None:
    r = inprocess.growth(bench_corpus[:10], (60, 200), rounds=1)
    assert set(r) == {60, 200}
    assert all(row["us_off"] > 0 and row["us_cold"] > 0 and row["rules"] == n for n, row in r.items())


def test_reload_times_tiny() -> None:
    r = inprocess.reload_times(1)
    assert r["cases"] >= 248 and r["reload_ms"] > 0


def test_memory_tiny() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--decisions", "300", "--every", "100"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["decisions"] == 300 and len(m["samples"]) == 4 and m["peak_mb"] > 0


# ---------------------------------------------------------------------------------------------------
# gRPC: the echo server in process, then servers and clients as processes


def test_echo_server_answers_with_fenliu_messages() -> None:
    import grpc
    from bench import echo_server

    from fenliu._proto.fenliu.v1 import triage_pb2 as pb
    from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
    from fenliu.serving import convert

    server, port = echo_server.create_server("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.TriageServiceStub(ch)
            data = corpus.generate(3)
            r = stub.Triage(pb.TriageRequest(complaint=convert.complaint_to_proto(data[0])), timeout=10)
            assert r.decision.complaint_id == data[0]["id"] and r.decision.category and not r.decision.trace
            r = stub.Triage(
                pb.TriageRequest(complaint=convert.complaint_to_proto(data[0]), include_trace=True)
            )
            assert r.decision.trace
            reqs = [pb.TriageStreamRequest(complaint=convert.complaint_to_proto(x)) for x in data]
            got = list(stub.TriageStream(iter(reqs), timeout=10))
            assert [(g.index, g.complaint_id) for g in got] == [(i, x["id"]) for i, x in enumerate(data)]
    finally:
        server.stop(0)


def test_zen_peer_serves_the_graphs_decisions_with_fenliu_messages(pack: Any) -> None:
    import grpc
    from bench import zen_server

    from fenliu._proto.fenliu.v1 import triage_pb2 as pb
    from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
    from fenliu.serving import convert

    server, port = zen_server.create_server("127.0.0.1:0")
    server.start()
    d = Decider(pack)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.TriageServiceStub(ch)
            for x in corpus.generate(40):
                r = stub.Triage(pb.TriageRequest(complaint=convert.complaint_to_proto(x)), timeout=10)
                ours = convert.decision_from_proto(
                    convert.decision_to_proto(d.decide(complaint_from_dict(x)))
                )
                theirs = convert.decision_from_proto(r.decision)
                for f in ("complaint_id", "category", "excluded", "exclusion", "color", "tier", "approach"):
                    assert theirs[f] == ours[f], (x["id"], f)
                assert theirs["stage"] == ours["stage"] and theirs["path"] == ours["path"]
                assert {k for k, v in theirs["deadlines"].items() if v} == {
                    k for k, v in ours["deadlines"].items() if v
                }
                assert not r.decision.trace
            x = corpus.generate(1)[0]
            r = stub.Triage(
                pb.TriageRequest(complaint=convert.complaint_to_proto(x), include_trace=True), timeout=10
            )
            trace = r.decision.trace  # ZEN's own: one entry per node, with the table row that matched
            assert len(trace) > 5 and all(t.rule and t.stage for t in trace)
            assert {"classify", "grade", "route"} <= {t.stage for t in trace}
            assert any(t.table_rows for t in trace)
            with pytest.raises(grpc.RpcError) as bad:
                stub.Triage(pb.TriageRequest(complaint=pb.Complaint()), timeout=10)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        d.close()
        server.stop(0)


def test_poisson_schedule_is_seeded_and_at_the_rate() -> None:
    from bench import open_loop

    a = open_loop.schedule(500.0, 20.0, seed=3)
    assert a == open_loop.schedule(500.0, 20.0, seed=3) != open_loop.schedule(500.0, 20.0, seed=4)
    assert a == sorted(a) and a[0] > 0 and a[-1] < 20.0
    assert 9_500 < len(a) < 10_500  # 10,000 expected, sd 100
    assert 0.0019 < (a[-1] - a[0]) / (len(a) - 1) < 0.0021  # the mean gap, 1/rate


def test_everything_on_turns_on_the_log_metrics_and_the_store_when_there(tmp_path: Path) -> None:
    from bench import open_loop

    has = open_loop.serve_has_store()
    args, on = open_loop.everything_on(tmp_path / "a", "auto")
    assert "--decision-log" in args and "--metrics-address" in args and on["text_model"]
    assert ("--store" in args) == has and on["metrics_url"].endswith("/metrics")
    args, on = open_loop.everything_on(tmp_path / "b", "off")
    assert "--store" not in args
    if not has:
        assert on["store"] == "not in fenliu serve"
        with pytest.raises(RuntimeError, match="no --store"):
            open_loop.everything_on(tmp_path / "c", "on")


def test_open_loop_load_against_the_echo_server() -> None:
    from bench import open_loop
    from bench.grpc_load import ServerProcess

    with ServerProcess("echo", 1) as server:
        r = open_loop.run(server, 100.0, seconds=1.0, warmup=0.3, channels=2)
    assert r["sent"] > 40 and r["ok"] == r["sent"] and r["errors"] == 0 and r["error_codes"] == {}
    assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["p999_ms"] <= r["max_ms"]
    assert r["achieved_rps"] == r["ok"] / 1.0 and r["server_cpu_us"] > 0
    assert r["max_in_flight"] >= 1 and r["send_lag_p99_ms"] >= 0


@pytest.mark.slow
def test_latency_part_tiny() -> None:
    from bench import open_loop

    r = open_loop.measure((50.0,), seconds=1.0, warmup=0.5)
    assert r["workers"] == 2 and len(r["runs"]) == 1 and r["runs"][0]["errors"] == 0
    assert r["decision_log_lines"] >= r["runs"][0]["ok"] > 0
    assert r["on"]["decision_log"] and r["on"]["text_model"]
    assert len(r["plain"]) == 1 and r["plain"][0]["errors"] == 0


def test_generated_lexicon_has_exactly_the_terms_asked(tmp_path: Path) -> None:
    from bench import lexicon_growth

    for n in lexicon_growth.SIZES:
        p = load_pack(lexicon_growth.write_pack(n, tmp_path / f"lex{n}"))
        terms = [e for e in p.lexicon if e.kind == "term"]
        assert len(terms) == n
        assert {e.category for e in terms} == {c for c in p.categories if c != "unclassified"}
        assert any(e.kind == "against" for e in p.lexicon) and any(e.kind == "together" for e in p.lexicon)
    assert lexicon_growth.lexicon(200) == lexicon_growth.lexicon(200)


def test_lexicon_growth_tiny() -> None:
    from bench import lexicon_growth

    r = lexicon_growth.measure(20, rounds=1)
    assert set(r["sizes"]) == set(lexicon_growth.SIZES)
    assert all(row["text_step_us"] > row["lexicon_us"] > 0 and row["model"] for row in r["sizes"].values())
    assert r["ratio"] > 0 and r["lexicon_ratio"] > 0


def test_a_latency_goal_with_errors_is_a_miss() -> None:
    from bench import run

    r = run.Run(dict(run.QUICK, corpus=5), quick=True)
    r.results["latency"] = {"runs": [{"rate": 300.0, "errors": 0}, {"rate": 600.0, "errors": 2}]}
    assert run.verdict("latency300", 4.0, r) == "PASS"
    assert run.verdict("latency300", 11.0, r) == "MISS"
    assert run.verdict("latency600", 4.0, r) == "MISS"  # fast, but not every request was answered


@pytest.mark.slow
@pytest.mark.parametrize("pinned", [False, True])
@pytest.mark.parametrize("kind", ["echo", "fenliu"])
def test_grpc_load_tiny(kind: str, pinned: bool) -> None:
    from bench.grpc_load import ServerProcess, run_load, tree

    with ServerProcess(kind, 1, pinned=pinned) as server:
        assert server.start_to_serving > 0
        pids = tree(server.pids()[0])
        affinities = {frozenset(os.sched_getaffinity(p)) for p in pids}
        # pinned: the serving process on one CPU; shared: on every CPU this test may use
        assert affinities == (
            {frozenset({min(os.sched_getaffinity(0))})} if pinned else {frozenset(os.sched_getaffinity(0))}
        )
        for mode in ("unary", "stream"):
            r = run_load(
                server, mode, processes=1, concurrency=2, window=4, seconds=1.0, warmup=0.5, corpus_n=50
            )
            assert r.requests > 0 and r.errors == 0, r
            assert 0 < r.p50_ms <= r.p99_ms


@pytest.mark.slow
def test_run_writes_the_report_and_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import run

    tiny = dict(
        run.QUICK,
        corpus=60,
        breakdown_n=20,
        call_warm=20,
        call_n=10,
        grpc_seconds=0.5,
        grpc_warmup=0.3,
        grpc_corpus=50,
        growth_n=5,
        memory_decisions=200,
        memory_every=100,
        memory_off_decisions=100,
        memory_off_every=50,
        matters=2000,
        matters_lookups=60,
        overdue_matters=3000,
        overdue_repeats=1,
        replay_n=1500,
        peer_rounds=1,
        latency_seconds=0.5,
        latency_warmup=0.3,
        lexicon_n=20,
    )
    monkeypatch.setattr(run, "QUICK", tiny)
    out = tmp_path / "performance.md"
    assert run.main(["--quick", "--out", str(out), "--json", str(tmp_path / "bench.json")]) == 0
    text = out.read_text(encoding="utf-8")
    assert "## Machine" in text and "## Goals" in text and "zen-engine" in text
    for section in (
        "In process",
        "Where a decision's time goes",
        "gRPC",
        "Cost as the pack grows",
        "Start and reload",
        "Worker memory",
        "What the gRPC goals leave for the decision",
        "what each step of a decision costs a served call",
        "The matter store with 2,000 matters",
        "Overdue matters (督办) with 3,000 matters",
        "the index, no table scan",
        "Replay: `fenliu diff` of two packs over 1,500 complaints",
        "The honest peer: GoRules ZEN behind the same grpcio server",
        "Latency with everything on: open loop, Poisson arrivals",
        "The text step as the lexicon grows",
    ):
        assert section in text, section
    assert "0 differences" in text
    assert "fenliu ÷ echo, pinned" in text and "| fenliu | 2 | pinned | stream |" in text
    assert "NOT MEASURED" not in text and "Parts that failed" not in text
    assert text.count("PASS") + text.count("MISS") + text.count("UNSURE") >= len(run.GOALS)
    for key in ("start", "reload", "store_sqlite", "store_postgresql", "store_ratio"):
        assert f"| {run.GOALS[key][0]} |" in text, key
    # the saved numbers render to the same report, byte for byte
    again = tmp_path / "again.md"
    assert run.main(["--render", str(tmp_path / "bench.json"), "--out", str(again)]) == 0
    assert again.read_text(encoding="utf-8") == text


def test_the_goals_read_from_start_reload_and_the_matter_store() -> None:
    from bench import run

    r = run.Run(dict(run.QUICK, corpus=5), quick=True)
    r.results.update(
        startup={"echo workers=1": 0.2, "fenliu workers=1": 1.2, "fenliu workers=2": 1.8},
        reload={"reload_ms": 800.0, "cases": 300, "cases_ms": 100.0, "parse_ms": 250.0},
        text={"load": {"first_load_ms": 900.0, "reload_ms": 1100.0}},
        matters={
            "backends": {
                b: {"p50_ms": 1.0, "p99_ms": p99, "cpu_p50_ms": 0.9, "cpu_p99_ms": 2.0, "load": "1.0"}
                for b, p99 in (("sqlite", 1.9), ("postgresql", 3.2))
            },
            "grpc": {
                "ratio": 0.9,
                "runs": {
                    "store off": {"rps": 1000.0, "cpu_us": 1000.0},
                    "store on (SQLite)": {"rps": 900.0, "cpu_us": 1100.0, "stored": 90.0, "requests": 100.0},
                },
            },
        },
    )
    r.derived_goals()
    said = {
        k: run.verdict(k, r.ratios[k][0], r)
        for k in ("start", "reload", "store_sqlite", "store_postgresql", "store_ratio")
    }
    # the slower of the run's two reloads counts; each store against its own goal
    assert said == {
        "start": "PASS",
        "reload": "MISS",
        "store_sqlite": "PASS",
        "store_postgresql": "MISS",
        "store_ratio": "PASS",
    }
    assert r.ratios["reload"][0] == 1.1
    assert "90 of 100 calls recorded within the store's deadline" in r.ratios["store_ratio"][1]


def test_a_two_worker_ratio_the_load_clients_capped_is_not_a_pass() -> None:
    from bench import run

    r = run.Run(dict(run.QUICK, corpus=5), quick=True)

    def rows(echo1: float, echo2: float) -> list[dict[str, Any]]:
        return [
            {"target": "echo", "mode": "unary", "workers": 1, "pinned": False, "rps": echo1},
            {"target": "echo", "mode": "unary", "workers": 2, "pinned": False, "rps": echo2},
            {"target": "echo", "mode": "unary", "workers": 2, "pinned": True, "rps": 10 * echo1},
        ]

    r.results["grpc"] = rows(3830.0, 3735.0)  # 2 echo workers served no more than 1: the clients' limit
    assert run.verdict("unary2", 0.86, r) == "UNSURE"
    assert run.verdict("unary2", 0.61, r) == "MISS"  # flattered and still short: a miss
    assert run.verdict("unary1", 0.86, r) == "PASS"  # 1 worker: the server is the limit
    r.results["grpc"] = rows(3000.0, 4500.0)
    assert run.verdict("unary2", 0.86, r) == "PASS"


def test_the_report_says_which_goals_allow_less_than_the_least_a_call_costs() -> None:
    from bench import run

    r = run.Run(dict(run.QUICK, corpus=5), quick=True)
    r.results["grpc"] = [
        {"target": kind, "mode": mode, "workers": 1, "pinned": pinned, "cpu_us": cpu}
        for kind, mode, pinned, cpu in (
            ("echo", "unary", False, 320.0),
            ("fenliu", "unary", False, 470.0),
            ("echo", "stream", False, 160.0),
            ("fenliu", "stream", False, 240.0),
            ("echo", "unary", True, 150.0),
            ("fenliu", "unary", True, 290.0),
        )
    ]
    r.results["servicer_call"] = {"warm": 10_000, "n": 2_000, "new": 62.0, "seen": 44.0}
    text = "\n".join(run._allowance(r))
    # unary: 320 × (1/0.85 − 1) = 56.5 and 150 × (…) = 26.5; stream: 160 × (1/0.8 − 1) = 40
    assert "| unary ≥ 0.85× | shared | 320 | 56 µs | 150 µs |" in text
    assert "| stream ≥ 0.8× | shared | 160 | 40 µs | 80 µs |" in text
    assert "| unary ≥ 0.85× | pinned | 150 | 26 µs | 140 µs |" in text
    assert "stream ≥ 0.8× | pinned" not in text  # not measured: no row
    assert "**62.0 µs**" in text and "**44.0 µs**" in text
    assert "even in process: stream shared (40 µs), unary pinned (26 µs)." in text
    assert "unary shared (" not in text  # 56 µs is more than the 44 µs the least call costs


def test_store_step_times_every_step_and_puts_the_functions_back() -> None:
    import importlib

    from bench import store_step

    def timed_functions() -> list[object]:
        return [
            getattr(getattr(importlib.import_module(m), o) if o else importlib.import_module(m), f)
            for _, m, o, f in store_step.STEPS
        ]

    before = timed_functions()
    r = store_step.run(n=20, rounds=1)
    assert [len(r["cpu_us"][k]) for k in ("off", "on")] == [1, 1]
    assert all(v > 0 for v in r["cpu_us"]["off"] + r["cpu_us"]["on"])
    # each step was reached: a renamed function would leave its step at zero
    assert set(r["steps_us"]) == {label for label, *_ in store_step.STEPS}
    assert all(us > 0 for us in r["steps_us"].values()), r["steps_us"]
    assert timed_functions() == before
    assert "on ÷ off" in store_step.render(r)
