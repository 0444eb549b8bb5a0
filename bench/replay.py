"""Part ``replay``: a year of complaints through ``fenliu diff`` of two packs, on every core.

    python -m bench.replay [--count 1000000] [--jobs N] [--sample 20000]

Generates ``count`` complaints with the corpus tools (``tools/gen_corpus.py``, its realistic mix) into
a temporary file, runs ``fenliu diff rules/wushen rules/examples/galutu`` over it as a separate process
(``--jobs``, default every CPU; the text model on: both packs read text with the reference pack's
lexicon and model), and reports the wall time, the CPU time of the process and its workers, and the
cost per complaint. Then, in this process, where one worker's time goes on ``sample`` complaints of
the same file (after as many others, so that the memo is as warm as in a worker): reading JSON,
validation, the text step, the two decisions, and the report's accumulation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OLD = ROOT / "rules" / "wushen"
NEW = ROOT / "rules" / "examples" / "galutu"


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def generate(count: int, path: Path, seed: int = 20261204) -> float:
    """Write ``count`` generated complaints to ``path``; the seconds it took."""
    t0 = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "gen_corpus.py"),
            "--count",
            str(count),
            "--seed",
            str(seed),
            "--out",
            str(path),
        ],
        check=True,
    )
    return time.monotonic() - t0


def run_diff(corpus: Path, jobs: int, out: Path) -> dict[str, Any]:
    """``fenliu diff`` of the two packs over ``corpus`` in its own process: wall and CPU seconds."""
    fenliu = Path(sys.executable).with_name("fenliu")
    cmd = [str(fenliu), "diff", str(OLD), str(NEW), "--corpus", str(corpus), "--format", "json"]
    cmd += ["--out", str(out), "--jobs", str(jobs), "--no-progress"]
    load_before = os.getloadavg()
    cpu0 = _children_cpu()
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.monotonic() - t0
    cpu = _children_cpu() - cpu0
    report = json.loads(out.read_text("utf-8"))
    return {
        "jobs": jobs,
        "wall_s": wall,
        "cpu_s": cpu,
        "complaints": report["complaints"],
        "changed": report["changed"],
        "invalid": report["invalid"],
        "replay_s": report["seconds"],
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }


def steps(corpus: Path, sample: int) -> dict[str, float]:
    """CPU µs per complaint for each step of one worker's work, on ``sample`` complaints after as many
    others (the memo and the text memo warmed on those)."""
    from fenliu import complaint_from_dict
    from fenliu.authoring.diff import FIELDS, DiffReport, excerpt, field_values
    from fenliu.authoring.replay import DiffJob

    job = DiffJob(str(OLD), str(NEW), 3, 16384)
    job.setup()
    assert job.deciders is not None and job.enrich is not None
    old, new = job.deciders
    text_old, text_new = job.enrich
    with corpus.open(encoding="utf-8") as f:
        lines = [line for _, line in zip(range(2 * sample), f, strict=False)]
    job.run(lines[:sample], 1)  # warm-up
    lines = lines[sample:]
    clock = time.process_time
    t0 = clock()
    raw = [json.loads(x) for x in lines]
    t1 = clock()
    cs = [complaint_from_dict(x) for x in raw]
    t2 = clock()
    hits0, misses0 = text_old.hits, text_old.misses
    es = [text_old(c) for c in cs]
    fs = es if text_new is text_old else [text_new(c) for c in cs]
    t3 = clock()
    hits = (text_old.hits - hits0) / max(1, text_old.hits - hits0 + text_old.misses - misses0)
    a = [old.decide(e) for e in es]
    t4 = clock()
    b = [new.decide(e) for e in fs]
    t5 = clock()
    report = DiffReport(old.id, new.id, "", 3)
    for c, x, y in zip(cs, a, b, strict=True):
        va, vb = field_values(x.outcome, x.suggestions), field_values(y.outcome, y.suggestions)
        if va != vb:
            for name, p, q in zip(FIELDS, va, vb, strict=True):
                if p != q:
                    report.fields[name].transitions[(p, q)] += 1
            excerpt(c)
    t6 = clock()
    t_whole = clock()
    job.run(lines, sample + 1)
    whole = clock() - t_whole
    job.close()
    n = len(lines)
    us = 1e6 / n
    return {
        "sample": float(n),
        "json_us": (t1 - t0) * us,
        "validate_us": (t2 - t1) * us,
        "text_us": (t3 - t2) * us,
        "text_memo_hit_rate": hits,
        "text_shared": float(text_new is text_old),
        "decide_old_us": (t4 - t3) * us,
        "decide_new_us": (t5 - t4) * us,
        "compare_us": (t6 - t5) * us,
        "span_us": whole * us,
    }


def run(count: int, jobs: int = 0, sample: int = 20_000, keep: Path | None = None) -> dict[str, Any]:
    jobs = jobs or len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="fenliu-replay-") as tmp:
        corpus = keep if keep is not None else Path(tmp) / "corpus.jsonl"
        gen = 0.0 if corpus.exists() else generate(count, corpus)
        result = run_diff(corpus, jobs, Path(tmp) / "diff.json")
        result["generate_s"] = gen
        result["bytes"] = corpus.stat().st_size
        result["steps"] = steps(corpus, min(sample, max(1, result["complaints"] // 2)))
    n = result["complaints"] or 1
    result["wall_us_per_complaint"] = result["wall_s"] / n * 1e6
    result["cpu_us_per_complaint"] = result["cpu_s"] / n * 1e6
    result["projected_1m_s"] = result["wall_s"] * 1_000_000 / n
    return result


def render(r: dict[str, Any]) -> str:
    s = r["steps"]
    la = " ".join(f"{x:.1f}" for x in r["load_before"])
    lb = " ".join(f"{x:.1f}" for x in r["load_after"])
    parts = [
        f"## Replay: `fenliu diff` of two packs over {r['complaints']:,} complaints, on every core",
        "",
        f"`fenliu diff rules/wushen rules/examples/galutu --jobs {r['jobs']}` over {r['complaints']:,} complaints "
        f"generated by `tools/gen_corpus.py` ({r['bytes'] / 2**20:.0f} MiB), the text model on in both packs; "
        "its own process, started to finished (`bench/replay.py`).",
        "",
        "| | |",
        "|---|---:|",
        f"| wall time, start to report | {r['wall_s']:.1f} s |",
        f"| of which replaying the corpus (the report's own time) | {r['replay_s']:.1f} s |",
        f"| CPU time, the process and its workers | {r['cpu_s']:.1f} s |",
        f"| wall µs per complaint | {r['wall_us_per_complaint']:.1f} |",
        f"| CPU µs per complaint (both packs) | {r['cpu_us_per_complaint']:.1f} |",
        f"| decisions that change | {r['changed']:,} |",
        f"| load average before → after | {la} → {lb} |",
        "",
        f"Where one worker's time goes (CPU µs per complaint, {s['sample']:,.0f} complaints after as many others):",
        "",
        "| step | µs |",
        "|---|---:|",
        f"| parse JSON | {s['json_us']:.1f} |",
        f"| validate (`complaint_from_dict`) | {s['validate_us']:.1f} |",
        f"| text step (lexicon and model; once per text, {s['text_memo_hit_rate']:.0%} of texts seen before"
        f"{', shared by both packs' if s['text_shared'] else ''}) | {s['text_us']:.1f} |",
        f"| decide, old pack | {s['decide_old_us']:.1f} |",
        f"| decide, new pack | {s['decide_new_us']:.1f} |",
        f"| compare the two decisions (the report) | {s['compare_us']:.1f} |",
        f"| a span as the worker runs it, all of the above | {s['span_us']:.1f} |",
        "",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=0, help="worker processes (default: every CPU)")
    ap.add_argument("--sample", type=int, default=20_000)
    ap.add_argument("--corpus", type=Path, help="use this corpus file (generated there when missing)")
    args = ap.parse_args(argv)
    r = run(args.count, args.jobs, args.sample, keep=args.corpus)
    print(render(r))
    print(json.dumps(r, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
