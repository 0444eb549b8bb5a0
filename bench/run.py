"""``make bench``: every fenliu benchmark in one run, written to docs/performance.md.

    python bench/run.py [--quick] [--parts zen,breakdown,grpc,peer,latency,growth,lexicon,...] [--store auto|on|off]

Each goal of issue 6 is a ratio of two numbers measured in this run, on this machine, interleaved where
that is possible. The run prints the ratios and exits 0 whether the goals pass or miss; a part that
fails is reported as such and the others still run. See bench/README.md for what each part measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, Python puts bench/ first on the path, where bench/zen would shadow the zen package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
for _p in (str(ROOT), str(ROOT / "service")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench import corpus, genpack, inprocess, zen_compare  # noqa: E402
from bench.grpc_load import LoadResult, ServerProcess, run_load  # noqa: E402
from fenliu import complaint_from_dict, load_pack  # noqa: E402
from fenliu.serving.supervisor import tune_gc  # noqa: E402

PARTS = (
    "zen",
    "breakdown",
    "grpc",
    "peer",
    "latency",
    "growth",
    "lexicon",
    "startup",
    "memory",
    "text",
    "matters",
    "overdue",
    "replay",
)

FULL = {
    "corpus": 5000,
    "rounds": 3,
    "breakdown_n": 1000,
    "call_warm": 10_000,
    "call_n": 2_000,
    "grpc_seconds": 6.0,
    "grpc_warmup": 1.5,
    "grpc_rounds": 3,
    "grpc_corpus": 30000,
    "growth_n": 1000,
    "growth_rounds": 9,
    "startup_repeats": 3,
    "reload_repeats": 5,
    "memory_decisions": 1_000_000,
    "memory_every": 100_000,
    "memory_off_decisions": 100_000,
    "memory_off_every": 10_000,
    "memory_max_seconds": 600.0,
    "text_n": 5000,
    "matters": 1_000_000,
    "matters_lookups": 3000,
    "overdue_matters": 1_000_000,
    "overdue_repeats": 30,
    "replay_n": 1_000_000,
    "peer_rounds": 3,
    "latency_seconds": 30.0,
    "latency_warmup": 5.0,
    "lexicon_n": 2000,
    "lexicon_rounds": 9,
}
QUICK = {
    "corpus": 400,
    "rounds": 1,
    "breakdown_n": 200,
    "call_warm": 1_000,
    "call_n": 300,
    "grpc_seconds": 2.0,
    "grpc_warmup": 1.0,
    "grpc_rounds": 1,
    "grpc_corpus": 1000,
    "growth_n": 100,
    "growth_rounds": 1,
    "startup_repeats": 1,
    "reload_repeats": 2,
    "memory_decisions": 20_000,
    "memory_every": 5_000,
    "memory_off_decisions": 5_000,
    "memory_off_every": 1_000,
    "memory_max_seconds": 120.0,
    "text_n": 500,
    "matters": 20_000,
    "matters_lookups": 300,
    "overdue_matters": 20_000,
    "overdue_repeats": 3,
    "replay_n": 20_000,
    "peer_rounds": 1,
    "latency_seconds": 3.0,
    "latency_warmup": 1.0,
    "lexicon_n": 300,
    "lexicon_rounds": 1,
}

#: The load per mode (the report's "Load:" paragraph): unary, 8 calls in flight per client process;
#: stream, 2 bidirectional streams per client process with 16 messages in flight on each.
LOAD: Final[dict[str, dict[str, Any]]] = {
    "unary": {"concurrency": 8},
    "stream": {"concurrency": 2, "window": 16},
}

# Goals (issue 6): (key, description, target, higher_is_better)
GOALS = {
    "inproc": ("in-process decisions per CPU-second, trace on: fenliu ÷ ZEN", 1.0, True),
    "unary1": ("gRPC unary throughput, 1 worker: fenliu ÷ echo", 0.85, True),
    "unary2": ("gRPC unary throughput, 2 workers: fenliu ÷ echo", 0.85, True),
    "stream1": ("gRPC stream throughput, 1 worker: fenliu ÷ echo", 0.80, True),
    "stream2": ("gRPC stream throughput, 2 workers: fenliu ÷ echo", 0.80, True),
    "peer_off": ("gRPC unary throughput, 1 worker, trace off: fenliu ÷ the ZEN peer", 1.3, True),
    "peer_on": ("gRPC unary throughput, 1 worker, trace on: fenliu ÷ the ZEN peer", 2.0, True),
    "latency300": ("open loop, 300 requests/s, everything on, 2 workers: p99 (and no errors)", 10.0, False),
    "latency600": ("open loop, 600 requests/s, everything on, 2 workers: p99 (and no errors)", 25.0, False),
    "growth": ("cost per decision, 500 ÷ 60 generated rules", 3.0, False),
    "lexicon": ("the text step per complaint, 2,000 ÷ 200 lexicon terms", 1.5, False),
    "memory": ("worker RSS across the run, peak MB (and flat)", 120.0, False),
    "text": ("the text step per complaint (normalize, lexicon, model), µs", 60.0, False),
    "replay": (
        "1,000,000 complaints through `fenliu diff` of two packs, text model on, every core, s",
        60.0,
        False,
    ),
    "start": ("start to SERVING, `fenliu serve`, 1 worker, text model on, s", 1.5, False),
    "reload": ("a reload with the pack's cases, floors and text model, s", 1.0, False),
    "store_sqlite": ("matter store, lookup-and-write p99 at 1,000,000 matters, SQLite", 2.0, False),
    "store_postgresql": ("matter store, lookup-and-write p99 at 1,000,000 matters, PostgreSQL", 3.0, False),
    "store_ratio": ("gRPC unary throughput, 2 workers: store on ÷ store off", 0.85, True),
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "durable-rules": _version("durable_rules"),
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "zen-engine": _version("zen-engine"),
    }


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            # the report this bench writes is not source
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/performance.md"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Run:
    def __init__(self, settings: dict[str, Any], quick: bool, store: str = "auto") -> None:
        self.s = settings
        self.quick = quick
        self.store = store  # the matter store in part latency: auto (when fenliu serve has it), on, off
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.ratios: dict[str, tuple[float, str]] = {}  # goal -> (value, how)
        self.timings: dict[str, float] = {}
        data = corpus.generate(settings["corpus"])
        self.data = data
        self.complaints = [complaint_from_dict(x) for x in data]

    def part(self, name: str, fn: Callable[[], None]) -> None:
        log(f"{name} ...")
        t0 = time.monotonic()
        try:
            fn()
        except Exception as e:
            self.errors[name] = f"{type(e).__name__}: {e}"
            log(f"{name} FAILED: {self.errors[name]}")
            traceback.print_exc()
        self.timings[name] = time.monotonic() - t0
        log(f"{name} done in {self.timings[name]:.0f} s")

    def _load_common(self) -> dict[str, Any]:
        """The gRPC loads' length, warm-up and corpus, the same for every part that loads a server."""
        s = self.s
        return {"seconds": s["grpc_seconds"], "warmup": s["grpc_warmup"], "corpus_n": s["grpc_corpus"]}

    # -- parts ------------------------------------------------------------------------------------------

    def zen(self) -> None:
        pack = load_pack(inprocess.WUSHEN)
        from fenliu import Decider

        d = Decider(pack, memoize=False)
        n, diffs = zen_compare.compare(self.complaints, d, zen_compare.zen_engine())
        d.close()
        self.results["zen_check"] = {"compared": n, "differences": len(diffs), "first": diffs[:10]}
        log(f"ZEN check: {n} complaints, {len(diffs)} differences")
        if diffs:
            log(zen_compare.render_diffs(diffs))
        r = inprocess.engines(self.complaints, self.s["rounds"], pack)
        self.results["engines"] = r
        rates = r["rates"]
        for k, v in rates.items():
            log(f"  {k:28s} {v:9.0f} decisions per CPU-second")
        log(f"  memo cache hit rate on a cold pass of the corpus: {r['cold_hit_rate']:.1%}")
        if r.get("cold_stage_hit_rate") is not None:
            log(f"  stages answered from the stage memo on that pass: {r['cold_stage_hit_rate']:.1%}")
        if not diffs:
            self.ratios["inproc"] = (
                rates["fenliu memo=cold trace=on"] / rates["zen trace=on"],
                "fenliu memo=cold trace=on ÷ zen trace=on",
            )

    def breakdown(self) -> None:
        data = self.data[: self.s["breakdown_n"]]
        self.results["breakdown"] = inprocess.breakdown(data, rounds=1 if self.quick else 3)
        try:  # reaches into the adapter's internals, which may change under it
            self.results["durable_share"] = inprocess.durable_share(data)
        except (AttributeError, TypeError, ValueError) as e:
            self.results["durable_share"] = {}
            self.errors["breakdown (durable internals)"] = f"{type(e).__name__}: {e}"
        for name, us in self.results["breakdown"]:
            log(f"  {name:62s} {us:8.1f} µs")
        for name, v in self.results["durable_share"].items():
            log(f"  {name:62s} {v:8.1f}")
        sc = self.results["servicer_call"] = inprocess.servicer_call(
            warm=self.s["call_warm"], n=self.s["call_n"], rounds=1 if self.quick else 3
        )
        log(
            f"  servicer's work per unary call, in process: {sc['new']:.1f} µs on new complaints "
            f"(after {sc['warm']:,}), {sc['seen']:.1f} µs on complaints seen before"
        )

    def matters(self) -> None:
        from bench import matter_store

        self.results["matters"] = matter_store.run(
            self.s["matters"],
            self.s["matters_lookups"],
            ["sqlite", "postgresql"],
            pool=2000 if self.quick else 20_000,
        )

    def overdue(self) -> None:
        from bench import overdue

        self.results["overdue"] = overdue.run(
            self.s["overdue_matters"], ["sqlite", "postgresql"], repeats=self.s["overdue_repeats"]
        )

    def grpc(self) -> None:
        s = self.s
        runs: list[LoadResult] = []
        starts: dict[str, float] = {}
        common = self._load_common()
        logs = Path(tempfile.gettempdir()) / "fenliu-bench"
        logs.mkdir(exist_ok=True)
        # Both servers run side by side (an idle server costs nothing); their loads alternate, round after
        # round, so that a change in the machine's load hits both alike. Each round sends new complaints.
        # Then again with every worker of both servers pinned to a CPU of its own (--pin-cpus auto).
        for pinned in (False, True):
            for workers in (1, 2):
                tag = f"{workers}{'-pinned' if pinned else ''}"
                with (
                    ServerProcess(
                        "echo", workers, log_path=str(logs / f"echo-{tag}.log"), pinned=pinned
                    ) as echo,
                    ServerProcess(
                        "fenliu", workers, log_path=str(logs / f"fenliu-{tag}.log"), pinned=pinned
                    ) as fen,
                ):
                    if not pinned:
                        starts[f"echo {workers}"], starts[f"fenliu {workers}"] = (
                            echo.start_to_serving,
                            fen.start_to_serving,
                        )
                    for rnd in range(s["grpc_rounds"]):
                        for mode in ("unary", "stream"):
                            for server in (echo, fen) if rnd % 2 == 0 else (fen, echo):
                                r = run_load(
                                    server, mode, **LOAD[mode], **common, salt=rnd + (100 if pinned else 0)
                                )
                                runs.append(r)
                                log(
                                    f"  {server.kind:6s} workers={workers}{' pinned' if pinned else ''} "
                                    f"{mode:6s} {r.rps:7.0f}/s  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:7.2f} ms  "
                                    f"server CPU {r.cpu_us_per_request:5.0f} µs/req  errors {r.errors}"
                                )
        self.results["grpc_runs"] = [
            r.__dict__ | {"rps": r.rps, "cpu_us": r.cpu_us_per_request} for r in runs
        ]
        self.results["grpc_start"] = starts
        table = []
        for pinned in (False, True):
            for workers in (1, 2):
                for mode in ("unary", "stream"):
                    for kind in ("echo", "fenliu"):
                        rs = [
                            r
                            for r in runs
                            if (r.target, r.mode, r.workers, r.pinned) == (kind, mode, workers, pinned)
                        ]
                        table.append(
                            {"target": kind, "workers": workers, "pinned": pinned, "mode": mode}
                            | _over_rounds(rs)
                        )
        self.results["grpc"] = table
        by = _grpc_rows(table)
        pinned_ratios: dict[str, float] = {}
        for mode in ("unary", "stream"):
            for w in (1, 2):
                f, e = by[("fenliu", mode, w, False)], by[("echo", mode, w, False)]
                if e["rps"] and not f["errors"] and not e["errors"]:
                    self.ratios[f"{mode}{w}"] = (
                        f["rps"] / e["rps"],
                        f"{f['rps']:.0f}/s ÷ {e['rps']:.0f}/s; server CPU per request "
                        f"{f['cpu_us']:.0f} µs vs {e['cpu_us']:.0f} µs ({e['cpu_us'] / f['cpu_us']:.2f}×); "
                        "pinned: see gRPC",
                    )
                fp, ep = by[("fenliu", mode, w, True)], by[("echo", mode, w, True)]
                if ep["rps"] and not fp["errors"] and not ep["errors"]:
                    pinned_ratios[f"{mode}{w}"] = fp["rps"] / ep["rps"]
        self.results["grpc_pinned_ratios"] = pinned_ratios

    def peer(self) -> None:
        """fenliu serve, the ZEN peer and the echo server, 1 worker each, side by side; unary loads,
        trace off and on, alternating round after round."""
        s = self.s
        runs: list[LoadResult] = []
        common = self._load_common()
        logs = Path(tempfile.gettempdir()) / "fenliu-bench"
        logs.mkdir(exist_ok=True)
        with (
            ServerProcess("echo", 1, log_path=str(logs / "peer-echo.log")) as echo,
            ServerProcess("zen", 1, log_path=str(logs / "peer-zen.log")) as zen,
            ServerProcess("fenliu", 1, log_path=str(logs / "peer-fenliu.log")) as fen,
        ):
            order = [fen, zen, echo]
            for rnd in range(s["peer_rounds"]):
                for trace in (False, True):
                    for server in order if rnd % 2 == 0 else order[::-1]:
                        r = run_load(server, "unary", **LOAD["unary"], **common, trace=trace, salt=200 + rnd)
                        r.mode = f"unary trace={'on' if trace else 'off'}"
                        runs.append(r)
                        log(
                            f"  {server.kind:6s} {r.mode:16s} {r.rps:7.0f}/s  p50 {r.p50_ms:6.2f} ms  "
                            f"p99 {r.p99_ms:7.2f} ms  server CPU {r.cpu_us_per_request:5.0f} µs/req  "
                            f"errors {r.errors}"
                        )
        table = []
        for trace in ("off", "on"):
            for kind in ("fenliu", "zen", "echo"):
                rs = [r for r in runs if (r.target, r.mode) == (kind, f"unary trace={trace}")]
                table.append({"target": kind, "trace": trace} | _over_rounds(rs))
        self.results["peer"] = table
        by = {(x["target"], x["trace"]): x for x in table}
        if self.results.get("zen_check", {}).get("differences"):
            return  # the graph does not decide as fenliu does: no ratio (the report says so)
        for trace in ("off", "on"):
            f, z, e = by[("fenliu", trace)], by[("zen", trace)], by[("echo", trace)]
            if z["rps"] and not f["errors"] and not z["errors"]:
                self.ratios[f"peer_{trace}"] = (
                    f["rps"] / z["rps"],
                    f"{f['rps']:.0f}/s ÷ {z['rps']:.0f}/s; server CPU per request {f['cpu_us']:.0f} µs vs "
                    f"{z['cpu_us']:.0f} µs; the echo server (the limit): {e['rps']:.0f}/s",
                )

    def latency(self) -> None:
        from bench import open_loop

        r = self.results["latency"] = open_loop.measure(
            (300.0, 600.0),
            seconds=self.s["latency_seconds"],
            warmup=self.s["latency_warmup"],
            store=self.store,
            log=log,
        )
        log(f"  everything on: {r['on']}")
        for run in r["runs"]:
            self.ratios[f"latency{run['rate']:.0f}"] = (
                run["p99_ms"],
                f"p50 {run['p50_ms']:.2f} ms, p99.9 {run['p999_ms']:.2f} ms; {run['errors']} errors; "
                f"achieved {run['achieved_rps']:.0f}/s of {run['offered_rps']:.0f}/s offered; "
                f"matter store: {r['on']['store']}",
            )

    def lexicon(self) -> None:
        from bench import lexicon_growth

        r = self.results["lexicon"] = lexicon_growth.measure(self.s["lexicon_n"], self.s["lexicon_rounds"])
        for k, row in r["sizes"].items():
            log(
                f"  {k:5d} terms: text step {row['text_step_us']:6.1f} µs, lexicon alone "
                f"{row['lexicon_us']:6.1f} µs per complaint"
            )
        lo, hi = min(r["sizes"]), max(r["sizes"])
        a, b = r["sizes"][lo], r["sizes"][hi]
        self.ratios["lexicon"] = (
            r["ratio"],
            f"text step {b['text_step_us']:.1f} µs ÷ {a['text_step_us']:.1f} µs (lexicon alone: "
            f"{b['lexicon_us']:.1f} ÷ {a['lexicon_us']:.1f} µs, {r['lexicon_ratio']:.2f}×)",
        )

    def growth(self) -> None:
        r = inprocess.growth(self.complaints[: self.s["growth_n"]], genpack.SIZES, self.s["growth_rounds"])
        self.results["growth"] = r
        for n, row in r.items():
            log(
                f"  {n:4d} rules: memo off {row['us_off']:7.0f} µs, memo cold {row['us_cold']:7.0f} µs "
                f"(hit rate {row['cold_hit_rate']:.0%}), {row['rules_fired']:.1f} rules fired"
            )
        lo, hi = min(r), max(r)
        self.ratios["growth"] = (
            r[hi]["us_cold"] / r[lo]["us_cold"],
            f"memo cold {r[hi]['us_cold']:.0f} µs ÷ "
            f"{r[lo]['us_cold']:.0f} µs (memo off: {r[hi]['us_off'] / r[lo]['us_off']:.2f}×)",
        )

    def startup(self) -> None:
        out: dict[str, list[float]] = {}
        for _ in range(self.s["startup_repeats"]):
            for kind, workers in (("echo", 1), ("fenliu", 1), ("fenliu", 2)):
                with ServerProcess(kind, workers) as server:
                    out.setdefault(f"{kind} workers={workers}", []).append(server.start_to_serving)
        self.results["startup"] = {k: statistics.median(v) for k, v in out.items()}
        self.results["reload"] = inprocess.reload_times(self.s["reload_repeats"])
        for k, v in self.results["startup"].items():
            log(f"  start to SERVING, {k}: {v * 1000:.0f} ms")
        for k, v in self.results["reload"].items():
            log(f"  {k}: {v:.1f}")

    def derived_goals(self) -> None:
        """The goals read from the results of parts ``startup``, ``text`` and ``matters`` (also when a
        saved run is rendered again: ``--render``)."""
        res = self.results
        if "startup" in res:
            st = res["startup"]
            self.ratios["start"] = (
                st["fenliu workers=1"],
                f"{st['fenliu workers=1'] * 1000:.0f} ms with 1 worker, {st['fenliu workers=2'] * 1000:.0f} ms "
                f"with 2; the echo server {st['echo workers=1'] * 1000:.0f} ms (median of the part's starts)",
            )
        rl = res.get("reload")
        reloads = [("part startup", rl["reload_ms"])] if rl else []
        if "text" in res:
            reloads.append(("part text", res["text"]["load"]["reload_ms"]))
        if reloads:  # the same reload measured twice in the run, at two moments: the slower one counts
            how = "; ".join(f"{ms:.0f} ms in {where}" for where, ms in reloads)
            if len(reloads) > 1:
                how += " (the same reload twice: the slower counts)"
            if rl:
                how += (
                    f"; of a reload, the pack's {rl['cases']:.0f} cases {rl['cases_ms']:.0f} ms and parsing "
                    f"it {rl['parse_ms']:.0f} ms"
                )
            self.ratios["reload"] = (max(ms for _, ms in reloads) / 1000, how)
        m = res.get("matters")
        if m:
            for backend in ("sqlite", "postgresql"):
                b = m["backends"].get(backend)
                if b:
                    self.ratios[f"store_{backend}"] = (
                        b["p99_ms"],
                        f"p50 {b['p50_ms']:.2f} ms, CPU p50 / p99 {b['cpu_p50_ms']:.2f} / {b['cpu_p99_ms']:.2f} ms; "
                        f"load {b['load']}",
                    )
            g = m.get("grpc")
            if g:
                on, off = g["runs"]["store on (SQLite)"], g["runs"]["store off"]
                stored = (
                    f"; {on['stored']:,.0f} of {on['requests']:,.0f} calls recorded within the store's "
                    "deadline, the others answered without history and queued"
                    if "stored" in on
                    else ""
                )
                self.ratios["store_ratio"] = (
                    g["ratio"],
                    f"{on['rps']:,.0f}/s ÷ {off['rps']:,.0f}/s; server CPU per request {on['cpu_us']:.0f} µs vs "
                    f"{off['cpu_us']:.0f} µs{stored}",
                )

    def text(self) -> None:
        from bench import text

        r = self.results["text"] = text.run(self.s["text_n"], 1 if self.quick else 3, 1 if self.quick else 3)
        c = r["cost"]
        log(
            f"  text step {c['text_step_us']:.1f} µs per complaint (lexicon alone {c['lexicon_us']:.1f}), "
            f"keyword scan {c['keyword_scan_us']:.1f} µs: {c['ratio']:.2f}×"
        )
        log(
            f"  model's memory in a worker {r['memory']['model_mb']:+.1f} MB; load {r['load']['first_load_ms']:.0f} ms, reload {r['load']['reload_ms']:.0f} ms"
        )
        self.ratios["text"] = (
            c["text_step_us"],
            f"{c['ratio']:.2f}× today's keyword scan ({c['keyword_scan_us']:.1f} µs)",
        )

    def replay(self) -> None:
        from bench import replay

        r = self.results["replay"] = replay.run(self.s["replay_n"])
        log(
            f"  fenliu diff of {r['complaints']:,} complaints, --jobs {r['jobs']}: {r['wall_s']:.1f} s wall, "
            f"{r['cpu_s']:.1f} s CPU ({r['cpu_us_per_complaint']:.0f} µs per complaint)"
        )
        scaled = "" if r["complaints"] == 1_000_000 else f", scaled from {r['complaints']:,}"
        self.ratios["replay"] = (
            r["projected_1m_s"],
            f"{r['wall_s']:.1f} s wall for {r['complaints']:,}{scaled}; {r['cpu_us_per_complaint']:.0f} CPU µs "
            f"per complaint over {r['jobs']} processes; load average {r['load_before'][0]:.1f} at the start",
        )

    def _memory_run(self, decisions: int, every: int, memo: bool) -> dict[str, Any]:
        s = self.s
        cmd = [
            sys.executable,
            "-m",
            "bench.memory",
            "--decisions",
            str(decisions),
            "--every",
            str(every),
            "--max-seconds",
            str(s["memory_max_seconds"]),
        ]
        if not memo:
            cmd.append("--no-memo")
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        last = ""
        assert p.stdout is not None
        for line in p.stdout:
            last = line
            log("  " + line.strip()[:160])
        if p.wait() != 0:
            raise RuntimeError(f"bench.memory exited with {p.returncode}")
        m: dict[str, Any] = json.loads(last)
        rss = [v for _, v in m["samples"]]
        m["second_half_growth_mb"] = round(rss[-1] - rss[len(rss) // 2], 1)
        m["max_mb"] = max(rss)
        return m

    def memory(self) -> None:
        s = self.s
        # The engine alone (memo off), then the worker as it runs (memoized): the difference is the cache.
        off = self._memory_run(s["memory_off_decisions"], s["memory_off_every"], memo=False)
        m = self._memory_run(s["memory_decisions"], s["memory_every"], memo=True)
        m["engine_only"] = off
        self.results["memory"] = m
        rss = [v for _, v in m["samples"]]
        self.ratios["memory"] = (
            max(m["peak_mb"], max(rss)),
            f"{rss[0]:.0f} → {rss[-1]:.0f} MB over {m['decisions']:,} decisions; second half "
            f"{m['second_half_growth_mb']:+.1f} MB; memo off: {off['samples'][0][1]:.0f} → "
            f"{off['samples'][-1][1]:.0f} MB over {off['decisions']:,}",
        )


# ----------------------------------------------------------------------------------------------------
# The report


_UNIT: Final = {
    "memory": " MB",
    "text": " µs",
    "replay": " s",
    "latency300": " ms",
    "latency600": " ms",
    "start": " s",
    "reload": " s",
    "store_sqlite": " ms",
    "store_postgresql": " ms",
}


def _shown(key: str, value: float) -> str:
    """A goal's measured value with its unit (most goals are ratios)."""
    if key == "memory":
        return f"{value:.0f} MB"
    if key == "text":
        return f"{value:.1f} µs"
    if key == "replay":
        return f"{value:.0f} s"
    if key.startswith("latency") or key in ("store_sqlite", "store_postgresql"):
        return f"{value:.2f} ms"
    if key in ("start", "reload"):
        return f"{value:.2f} s"
    return f"{value:.2f}×"


def verdict(key: str, value: float, r: Run) -> str:
    _, target, higher = GOALS[key]
    ok = value >= target if higher else value <= target
    if key == "memory":
        m = r.results["memory"]
        flat = m["second_half_growth_mb"] <= max(2.0, 0.05 * m["max_mb"])
        ok = ok and flat
    if key.startswith("latency"):  # a latency goal also asks for zero errors
        runs = r.results.get("latency", {}).get("runs", ())
        ok = ok and all(x["errors"] == 0 for x in runs if f"latency{x['rate']:.0f}" == key)
    if ok and _client_bound(key, r):
        return "UNSURE"  # it would pass, but the ratio measured the load clients
    return "PASS" if ok else "MISS"


#: With 2 workers the echo server must serve at least this much more than with 1, or the load clients
#: (which share the machine's cores) set the ceiling, and a fenliu ÷ echo ratio measures them instead.
CLIENT_BOUND: Final = 1.15


def _client_bound(key: str, r: Run) -> bool:
    if key not in ("unary2", "stream2"):
        return False
    by = _grpc_rows(r.results.get("grpc", ()))
    one, two = (by.get(("echo", key[:-1], w, False), {}).get("rps", 0.0) for w in (1, 2))
    return bool(one) and two < CLIENT_BOUND * one


def _grpc_rows(rows: Any) -> dict[tuple[str, str, int, bool], dict[str, Any]]:
    """The gRPC table's rows by (server, mode, workers, pinned)."""
    return {(x["target"], x["mode"], x["workers"], bool(x.get("pinned"))): x for x in rows}


def _over_rounds(rs: Sequence[LoadResult]) -> dict[str, Any]:
    """One server's loads of one kind over the rounds: medians, and CPU per request over all of them."""
    requests = sum(r.requests for r in rs)
    return {
        "rounds": len(rs),
        "rps": statistics.median(r.rps for r in rs),
        "p50_ms": statistics.median(r.p50_ms for r in rs),
        "p99_ms": statistics.median(r.p99_ms for r in rs),
        "cpu_us": sum(r.server_cpu_s for r in rs) / requests * 1e6 if requests else 0.0,
        "errors": sum(r.errors for r in rs),
    }


#: A section of docs/performance.md with this ending to its title holds the findings of a measurement
#: retired from the bench (such as the echo server doing fenliu's first steps, one more at a time):
#: docs/performance.md is their only home, and every run keeps them as they were measured.
RETIRED = "(findings of a retired measurement)"


def retired_findings(doc: Path = ROOT / "docs" / "performance.md") -> list[str]:
    """The retired measurements' sections of ``doc``, each ending with a blank line."""
    if not doc.exists():
        return []
    out: list[str] = []
    keep = False
    for line in doc.read_text("utf-8").splitlines():
        if line.startswith("## "):
            keep = line.rstrip().endswith(RETIRED)
        if keep:
            out.append(line)
    while out and out[-1] == "":
        out.pop()
    return [*out, ""] if out else []


def _allowance(r: Run) -> list[str]:
    """What each 1-worker gRPC goal leaves fenliu per call, beside what its per-call work costs."""
    by = _grpc_rows(r.results["grpc"])
    sc = r.results["servicer_call"]
    out = [
        "### What the gRPC goals leave for the decision",
        "",
        "With one worker a server is bound by one core (its GIL), so its throughput follows its CPU per "
        "request: at a goal of *t*× the echo server, fenliu's CPU per request may be about the echo "
        "server's ÷ *t*, i.e. it may add the echo server's × (1/*t* − 1) to the call. That is the most "
        "a goal allows: the throughput ratios measured fall below the CPU ratios, as they do when part "
        "of a call's CPU (gRPC's core) runs outside the GIL while everything fenliu adds holds it.",
        "",
        "| goal, 1 worker | CPUs | echo server CPU µs/request | fenliu may add, at the goal | fenliu adds, measured |",
        "|---|---|---|---|---|",
    ]
    below: list[str] = []
    for pinned in (False, True):
        for mode in ("unary", "stream"):
            e, f = by.get(("echo", mode, 1, pinned)), by.get(("fenliu", mode, 1, pinned))
            if not e or not f or not e["cpu_us"] or not f["cpu_us"]:
                continue
            target = GOALS[f"{mode}1"][1]
            allowed = e["cpu_us"] * (1 / target - 1)
            cpus = "pinned" if pinned else "shared"
            out.append(
                f"| {mode} ≥ {target:g}× | {cpus} | {e['cpu_us']:.0f} | {allowed:.0f} µs | "
                f"{f['cpu_us'] - e['cpu_us']:.0f} µs |"
            )
            if allowed < sc["seen"]:
                below.append(f"{mode} {cpus} ({allowed:.0f} µs)")
    out += [
        "",
        f"The servicer's work for one unary call in process, with no gRPC around it (validation, the "
        f"decision, its conversion and the answer's serialization, trace off; `bench/inprocess.py`, "
        f"`servicer_call`): **{sc['new']:.1f} µs** on complaints not seen before, after {sc['warm']:,} "
        f"others, and **{sc['seen']:.1f} µs** on complaints seen before, every class remembered by the "
        "memo graph: the least this design costs per call. In a serving worker the same work costs "
        "more (gRPC's own code runs between two calls and leaves the caches cold; `bench/README.md`, "
        "finding 10, measured 1.6-2.2×).",
        "",
    ]
    if below:
        out += [
            f"Allowed less than that least cost even in process: {', '.join(below)}. No change to what "
            "is remembered or to the engine can meet these goals; only making validation, the class key, "
            "the memo walk and the conversion themselves cheaper could.",
            "",
        ]
    return out


def _peer_section(r: Run) -> list[str]:
    rows = r.results["peer"]
    by = {(x["target"], x["trace"]): x for x in rows}
    names = {
        "fenliu": "fenliu serve",
        "zen": "the ZEN peer (`bench/zen_server.py`)",
        "echo": "the echo server (the limit)",
    }
    out = [
        f"## The honest peer: GoRules ZEN behind the same grpcio server (1 worker each, unary, "
        f"{r.s['grpc_seconds']:g} s per load after {r.s['grpc_warmup']:g} s warm-up, {r.s['peer_rounds']} "
        "alternating rounds, median)",
        "",
        "| server | trace | requests/s | ÷ ZEN peer | ÷ echo | p50 ms | p99 ms | server CPU µs/request | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        z, e = by[("zen", x["trace"])], by[("echo", x["trace"])]
        out.append(
            f"| {names[x['target']]} | {x['trace']} | {x['rps']:,.0f} | "
            f"{x['rps'] / z['rps'] if z['rps'] else 0:.2f}× | {x['rps'] / e['rps'] if e['rps'] else 0:.2f}× | "
            f"{x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['cpu_us']:.0f} | {x['errors']} |"
        )
    out += [
        "",
        "The three servers run side by side, each on its own port, and their loads alternate (the order "
        "reversed every other round); each load is the gRPC part's unary load (2 client processes, 8 calls "
        "in flight each, complaints no other load sends). The ZEN peer is what a Python team would build "
        "instead: the echo server's skeleton (fenliu serve's transport), fenliu's conversion and "
        "validation of the request, the reference pack's text step (the graph reads its fields), then "
        "`ZenEngine.evaluate` on `bench/zen/wushen.json` (checked against fenliu by part zen and the smoke "
        "test) and a `Decision` built from its result; with trace on, ZEN's own trace, one entry per "
        "node. It leaves out the citizen guidance, notes and suggestions, which fenliu builds.",
        "",
    ]
    return out


def _latency_section(r: Run) -> list[str]:
    lat = r.results["latency"]
    on = lat["on"]
    out = [
        f"## Latency with everything on: open loop, Poisson arrivals (`fenliu serve --workers "
        f"{lat['workers']}`, unary, trace off, {r.s['latency_seconds']:g} s measured after "
        f"{r.s['latency_warmup']:g} s at the same rate)",
        "",
        "| server | rate (offered) | achieved | requests | p50 ms | p99 ms | p99.9 ms | max ms | errors | "
        "most in flight | client late p99 ms | server CPU µs/request |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [("everything on", x) for x in lat["runs"]] + [("nothing on", x) for x in lat.get("plain", ())]
    for what, x in rows:
        out.append(
            f"| {what} | {x['rate']:.0f}/s ({x['offered_rps']:.0f}) | {x['achieved_rps']:.0f}/s | {x['sent']:,} | "
            f"{x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['p999_ms']:.2f} | {x['max_ms']:.1f} | "
            f"{x['errors']}{' ' + str(x['error_codes']) if x['error_codes'] else ''} | {x['max_in_flight']} | "
            f"{x['send_lag_p99_ms']:.2f} | {x['server_cpu_us']:.0f} |"
        )
    store = on["store"]
    out += [
        "",
        f"On: the decision log (masked, HMAC key file, rotated at its default size; "
        f"{lat['decision_log_lines']:,} decisions in {lat.get('decision_log_files', 1)} files at the end, "
        "the oldest rotated away), "
        f"Prometheus metrics ({on['metrics']}), the reference pack's text model "
        f"({'on' if on['text_model'] else '**absent**'}), the matter store: **{store}**"
        + (
            " (this `fenliu serve` has no `--store`; `bench/run.py --store on` requires it, `auto` turns it "
            "on when it is there)"
            if store == "not in fenliu serve"
            else ""
        )
        + f". Start to SERVING with all of it: {lat['start_to_serving'] * 1000:.0f} ms.",
        "",
        "Each request is sent at its scheduled time whatever the answers (grpc.aio, one task per call, "
        "8 connections from one client process), and its latency runs from the scheduled time to the "
        "answer, so a queue in the server, or a client late in sending (*client late*), counts in it. "
        "The schedule is seeded exponential gaps; every request is a complaint sent once. *nothing on*: "
        "the same loads on a plain `fenliu serve --workers 2` started after it (no decision log, no metrics; "
        "the pack's text model is in the pack either way), to show what turning the rest on costs. The "
        "goals use *everything on*.",
        "",
    ]
    return out


def _lexicon_section(r: Run) -> list[str]:
    x = r.results["lexicon"]
    out = [
        f"## The text step as the lexicon grows (`bench/lexicon_growth.py`; {x['complaints']:,} complaints, "
        f"median of {x['rounds']} interleaved rounds, CPU time)",
        "",
        "| lexicon terms | against | together | text step µs (normalize, lexicon, model) | lexicon alone µs |",
        "|---|---|---|---|---|",
    ]
    for k, row in x["sizes"].items():
        out.append(
            f"| {int(k):,} | {row['against']} | {row['together']} | {row['text_step_us']:.1f} | "
            f"{row['lexicon_us']:.1f} |"
        )
    out += [
        "",
        f"2,000 ÷ 200 terms: the text step {x['ratio']:.2f}×, the lexicon alone {x['lexicon_ratio']:.2f}×. "
        "Both packs are the reference pack with a generated lexicon (its own terms drawn per category, "
        "with against and together entries in its proportions) and the same model.",
        "",
    ]
    return out


def report(r: Run, info: dict[str, str], started: str, seconds: float) -> str:
    L: list[str] = []
    add = L.append
    mode = (
        "quick (--quick: small sizes, one round; for checking the bench, not for the numbers)"
        if r.quick
        else "full"
    )
    add("# Performance")
    add("")
    add(
        f"Written by `make bench` (`bench/run.py`) on {started}, {mode}, in {seconds / 60:.1f} min. "
        f"Source at the start: {info['revision']}. Every ratio below comes from numbers measured in this one run on this "
        "machine; absolute numbers move with the machine's load, ratios much less. How each number is "
        "measured: `bench/README.md`."
    )
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    for k in (
        "nproc",
        "cpu",
        "memory",
        "kernel",
        "python",
        "durable-rules",
        "grpcio",
        "protobuf",
        "zen-engine",
    ):
        add(f"| {k} | {info[k]} |")
    add(f"| load average at start → end | {info['load_start']} → {info['load_end']} |")
    add("")
    add("## Goals")
    add("")
    add("| goal | target | measured | | from |")
    add("|---|---|---|---|---|")
    for key, (desc, target, higher) in GOALS.items():
        tgt = f"{'≥' if higher else '≤'} {target:g}{_UNIT.get(key, '×')}"
        if key in r.ratios:
            value, how = r.ratios[key]
            shown = _shown(key, value)
            said = verdict(key, value, r)
            if said == "UNSURE":
                how += (
                    f"; **the echo server served less than {CLIENT_BOUND:g}× its 1-worker rate: the load "
                    "clients, not the servers, set this ceiling**"
                )
            add(f"| {desc} | {tgt} | {shown} | **{said}** | {how} |")
        else:
            why = "not measured"
            if key in ("inproc", "peer_off", "peer_on") and r.results.get("zen_check", {}).get("differences"):
                why = "ZEN graph not equivalent on the corpus: no ratio"
            add(f"| {desc} | {tgt} | — | **NOT MEASURED** | {why} |")
    add("")
    if r.errors:
        add("## Parts that failed")
        add("")
        for k, v in r.errors.items():
            add(f"- **{k}**: `{v}`")
        add("")

    if "engines" in r.results:
        e = r.results["engines"]
        zc = r.results["zen_check"]
        add(
            f"## In process: fenliu and GoRules ZEN on the reference pack ({e['n']:,} complaints, "
            f"median of {e['rounds']} interleaved rounds)"
        )
        add("")
        add(
            f"ZEN graph `bench/zen/wushen.json` checked first: {zc['compared']:,} complaints, "
            f"**{zc['differences']} differences** in {', '.join(zen_compare.COMPARED)}."
        )
        add("")
        add("| engine | memo | trace | decisions per CPU-second | CPU µs per decision | ÷ ZEN, same trace |")
        add("|---|---|---|---|---|---|")
        rates = e["rates"]
        for name, v in rates.items():
            parts = name.split()
            engine = parts[0]
            memo = parts[1].split("=")[1] if engine == "fenliu" else "—"
            trace = parts[-1].split("=")[1]
            zen = rates[f"zen trace={trace}"]
            add(f"| {engine} | {memo} | {trace} | {v:,.0f} | {1e6 / v:.0f} | {v / zen:.2f}× |")
        add("")
        stage = e.get("cold_stage_hit_rate")
        if stage is not None:
            add(
                f"Stage memo on the same cold pass: **{stage:.1%}** of the stages were answered without the engine "
                "(`Decider.stage_hits` ÷ (`stage_hits` + `stage_misses`))."
            )
            add("")
        add(
            f"Decisions answered entirely from the memo graph on a cold pass over the corpus: "
            f"**{e['cold_hit_rate']:.1%}** (the corpus holds distinct complaints; the graph remembers what each "
            "stage does per class of its input, see `docs/engine.md`). *memo=off*: every decision runs the "
            "engine. *memo=cold*: a fresh decider, one pass (what a worker sees on distinct complaints). "
            "*memo=warm*: every class seen before (an upper bound, not a realistic rate). The goal uses "
            "memo=cold with trace on: the service runs memoized, and a cold pass is the honest rate for "
            "distinct complaints."
        )
        add("")
    if "breakdown" in r.results:
        add("## Where a decision's time goes (CPU µs per complaint, best of rounds, memo off unless said)")
        add("")
        add("| step | µs |")
        add("|---|---|")
        for name, us in r.results["breakdown"]:
            add(f"| {name} | {us:.1f} |")
        add("")
        if r.results.get("durable_share"):
            add("Inside durable_rules matching (memo off), µs per decision:")
            add("")
            add("| | |")
            add("|---|---|")
            for name, v in r.results["durable_share"].items():
                add(f"| {name} | {v:.1f} |")
            add("")
    if "grpc" in r.results:
        add(
            f"## gRPC (`fenliu serve` beside the echo server, {r.s['grpc_seconds']:g} s per load after "
            f"{r.s['grpc_warmup']:g} s warm-up, {r.s['grpc_rounds']} alternating rounds, median; trace off)"
        )
        add("")
        add(
            "| server | workers | CPUs | mode | requests/s | p50 ms | p99 ms | server CPU µs/request | errors |"
        )
        add("|---|---|---|---|---|---|---|---|---|")
        for x in r.results["grpc"]:
            add(
                f"| {x['target']} | {x['workers']} | {'pinned' if x.get('pinned') else 'shared'} | {x['mode']} | "
                f"{x['rps']:,.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['cpu_us']:.0f} | {x['errors']} |"
            )
        add("")
        by = _grpc_rows(r.results["grpc"])
        if r.results.get("grpc_pinned_ratios"):
            add(
                "Each worker of both servers pinned to a CPU of its own (`--pin-cpus auto`), against the same "
                "servers unpinned (`shared`, the default, which the goals use):"
            )
            add("")
            add(
                "| mode | workers | fenliu ÷ echo, shared | fenliu ÷ echo, pinned | fenliu pinned ÷ shared | echo pinned ÷ shared |"
            )
            add("|---|---|---|---|---|---|")
            for mode in ("unary", "stream"):
                for w in (1, 2):
                    key = f"{mode}{w}"
                    if key not in r.results["grpc_pinned_ratios"] or key not in r.ratios:
                        continue
                    f0, f1 = by[("fenliu", mode, w, False)], by[("fenliu", mode, w, True)]
                    e0, e1 = by[("echo", mode, w, False)], by[("echo", mode, w, True)]
                    add(
                        f"| {mode} | {w} | {r.ratios[key][0]:.2f}× | {r.results['grpc_pinned_ratios'][key]:.2f}× | "
                        f"{f1['rps'] / f0['rps']:.2f}× | {e1['rps'] / e0['rps']:.2f}× |"
                    )
            add("")
        add(
            "Load: 2 client processes (Python, grpc.aio), each with 2 connections; unary: 8 calls in flight per "
            "process; stream: 2 bidirectional streams per process with 16 messages in flight on each. Every "
            "round sends complaints no earlier round sent (30,000 per client and mode, each sent once), so "
            "the memo cache sees distinct complaints. The clients share the 2 cores with the servers: a throughput ratio "
            "includes the clients' share of the machine, and flatters the slower server when the clients are "
            "the bottleneck (2 workers). The server's CPU per request, read from /proc over the measured "
            "window, is the stricter view of what the decision adds to the call."
        )
        add("")
        if "servicer_call" in r.results:
            L.extend(_allowance(r))
    L.extend(retired_findings())
    if "peer" in r.results:
        L.extend(_peer_section(r))
    if "latency" in r.results:
        L.extend(_latency_section(r))
    if "growth" in r.results:
        add(
            f"## Cost as the pack grows (generated packs, `bench/genpack.py`; {r.s['growth_n']:,} complaints)"
        )
        add("")
        add(
            "| rules | stages | load + compile ms | rules fired per decision | memo off CPU µs | memo cold CPU µs | "
            "cold hit rate |"
        )
        add("|---|---|---|---|---|---|---|")
        for n, row in r.results["growth"].items():
            add(
                f"| {n} | {row['stages']} | {row['load_compile_ms']:.0f} | {row['rules_fired']:.1f} | "
                f"{row['us_off']:.0f} | {row['us_cold']:.0f} | {row['cold_hit_rate']:.0%} |"
            )
        add("")
    if "lexicon" in r.results:
        L.extend(_lexicon_section(r))
    if "startup" in r.results:
        add("## Start and reload")
        add("")
        add("| | ms |")
        add("|---|---|")
        for k, v in r.results["startup"].items():
            add(f"| start to SERVING (health check), {k} | {v * 1000:.0f} |")
        rl = r.results["reload"]
        add(
            f"| first load in process (`Triage.from_path`, incl. {rl['cases']:.0f} cases) | {rl['first_load_ms']:.0f} |"
        )
        add(
            f"| reload (`Triage.load`: load, compile, lint, {rl['cases']:.0f} cases, swap) | {rl['reload_ms']:.0f} |"
        )
        add(f"| of which: parse the pack | {rl['parse_ms']:.0f} |")
        add(f"| of which: compile (incl. the durable_rules ruleset) | {rl['compile_ms']:.0f} |")
        add(f"| of which: lint | {rl['lint_ms']:.0f} |")
        add(f"| of which: run the pack's cases | {rl['cases_ms']:.0f} |")
        add("")
    if "memory" in r.results:
        m = r.results["memory"]
        off = m["engine_only"]
        add(f"## Worker memory ({m['decisions']:,} distinct complaints through the servicer in one process)")
        add("")
        add(
            "| decisions | RSS MB, memoized (as served) | | decisions | RSS MB, memo off (the engine alone) |"
        )
        add("|---|---|---|---|---|")
        rows = max(len(m["samples"]), len(off["samples"]))
        for i in range(rows):
            a = m["samples"][i] if i < len(m["samples"]) else None
            b = off["samples"][i] if i < len(off["samples"]) else None
            add(
                f"| {f'{a[0]:,}' if a else ''} | {a[1] if a else ''} | | {f'{b[0]:,}' if b else ''} | "
                f"{b[1] if b else ''} |"
            )
        add("")
        add(
            f"Memoized: peak (VmHWM) {m['peak_mb']} MB; growth over the second half {m['second_half_growth_mb']:+} MB; "
            f"memo graph at the end {m['cache_entries']:,} of at most {m['cache_size']:,} nodes and edges "
            "(it starts afresh when full); hit rate "
            f"{m['hit_rate']:.1%}; {m['seconds']:.0f} s"
            + (" — **stopped early by the time cap**" if m["capped"] else "")
            + f". Memo off: peak {off['peak_mb']} MB, growth over the second half {off['second_half_growth_mb']:+} MB"
            + (" — **stopped early by the time cap**" if off["capped"] else "")
            + f". Path per decision: {m.get('path', 'decide')}."
        )
        add("")
    if "text" in r.results:
        t = r.results["text"]
        c, mem, ld = t["cost"], t["memory"], t["load"]
        add("## Text step")
        add("")
        add(
            f"Per complaint in process ({c['complaints']:.0f} complaints of the labelled corpus, "
            f"{c['mean_chars']:.0f} characters on average; `bench/text.py`):"
        )
        add("")
        add("| step | µs per complaint |")
        add("|---|---:|")
        add(f"| today's keyword scan (normalize + one Aho-Corasick pass) | {c['keyword_scan_us']:.1f} |")
        add(f"| normalize + lexicon | {c['lexicon_us']:.1f} |")
        add(f"| normalize + lexicon + model (the text step) | {c['text_step_us']:.1f} |")
        add(f"| ratio, text step ÷ keyword scan | {c['ratio']:.2f}× |")
        add("")
        add(
            f"A worker's memory with the model: {mem['with_model_mb']:.1f} MB against {mem['without_model_mb']:.1f} MB "
            f"without it ({mem['model_mb']:+.1f} MB). Load with the model (load, compile, lint, cases, floors): "
            f"{ld['first_load_ms']:.0f} ms; reload {ld['reload_ms']:.0f} ms."
        )
        add("")
    if "matters" in r.results:
        from bench import matter_store

        add(matter_store.render(r.results["matters"]))
        add("")
    if "overdue" in r.results:
        from bench import overdue

        add(overdue.render(r.results["overdue"]))
        add("")
    if "replay" in r.results:
        from bench import replay

        add(replay.render(r.results["replay"]))
    add("## Part durations")
    add("")
    add(", ".join(f"{k} {v:.0f} s" for k, v in r.timings.items()) + ".")
    add("")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fenliu benchmarks (issue 6)")
    ap.add_argument("--quick", action="store_true", help="small sizes, one round: checks the bench, ~2 min")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    ap.add_argument("--json", help="also write every number as JSON here")
    ap.add_argument(
        "--render",
        metavar="JSON",
        help="measure nothing: write the report again from a run's saved --json (after a change to the report)",
    )
    ap.add_argument(
        "--store",
        choices=("auto", "on", "off"),
        default="auto",
        help="the SQLite matter store in part latency: auto (when fenliu serve has --store), on, off",
    )
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts: {', '.join(sorted(unknown))}")

    if args.render:
        saved = json.loads(Path(args.render).read_text(encoding="utf-8"))
        again = Run.__new__(Run)
        head = saved.get("head", {})
        again.quick, again.results, again.errors = bool(head.get("quick")), saved["results"], saved["errors"]
        again.s = QUICK if again.quick else FULL
        again.ratios = {k: (v[0], v[1]) for k, v in saved["ratios"].items()}
        again.timings = saved.get("timings", {})
        again.derived_goals()
        Path(args.out).write_text(
            report(again, saved["machine"], head.get("started", "?"), head.get("seconds", 0.0)),
            encoding="utf-8",
        )
        return 0
    # Stopped with SIGTERM, unwind like Ctrl-C so that servers and clients are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    info = machine()
    info["revision"] = _git_revision()
    info["load_start"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    t0 = time.monotonic()
    run = Run(QUICK if args.quick else FULL, args.quick, args.store)
    # Decisions in this process run as a worker runs them: with the collector set up for a worker
    # (what is loaded frozen, young objects collected every 20,000 allocations). ZEN alike.
    tune_gc()
    log(
        f"machine: {info['nproc']} × {info['cpu']}; Python {info['python']}, durable-rules {info['durable-rules']}, "
        f"grpcio {info['grpcio']}, zen-engine {info['zen-engine']}; corpus {len(run.complaints):,} complaints"
    )
    for name in PARTS:
        if name in parts:
            run.part(name, getattr(run, name))
    info["load_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    run.derived_goals()
    seconds = time.monotonic() - t0
    text = report(run, info, started, seconds)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": info,
                    "results": run.results,
                    "errors": run.errors,
                    "ratios": run.ratios,
                    "timings": run.timings,
                    "head": {"started": started, "seconds": seconds, "quick": run.quick},
                },
                ensure_ascii=False,
                indent=1,
                default=str,
            )
        )
    print()
    for key, (desc, _target, _) in GOALS.items():
        if key in run.ratios:
            v, how = run.ratios[key]
            shown = _shown(key, v)
            print(f"{verdict(key, v, run):4s}  {desc}: {shown}  ({how})")
        else:
            print(f"----  {desc}: not measured")
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
