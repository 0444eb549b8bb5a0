"""The text step's cost (bench part ``text``): normalize, lexicon, model, per complaint in process,
beside today's keyword scan; a worker's memory with the model loaded; start and reload with it.

    .venv/bin/python -m bench.text [--n 2000] [--labelled corpus/labelled.jsonl]

The complaints are the labelled corpus's texts (citizens' own words, long and short), or the generated
benchmark corpus when there is none. "Keyword scan" is what the classify stage cost before the lexicon:
normalizing the title and text and finding every keyword of the former keyword rules
(tests/packs/keywords) with one Aho-Corasick pass (``CompiledPack.read``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "service"))

from fenliu import Complaint, compile_pack, complaint_from_dict, load_pack  # noqa: E402
from fenliu.engine.enrich import enrichment_for  # noqa: E402

WUSHEN = ROOT / "rules" / "wushen"
KEYWORDS = ROOT / "tests" / "packs" / "keywords"
LABELLED = ROOT / "corpus" / "labelled.jsonl"


def complaints(n: int, labelled: Path = LABELLED) -> list[Complaint]:
    if labelled.is_file():
        rows = [json.loads(x) for x in labelled.read_text("utf-8").splitlines() if x.strip()]
        data = [{"id": r["id"], "title": r.get("title") or "", "text": r["text"]} for r in rows]
    else:
        sys.path.insert(0, str(ROOT))
        from bench import corpus

        data = [d for d in corpus.generate(n) if d.get("text")]
    out = [complaint_from_dict(d) for d in data]
    return (out * (n // len(out) + 1))[:n]


def _per_complaint_us(fn: Any, cs: list[Complaint], rounds: int) -> float:
    """The median over ``rounds`` of the CPU time per complaint (the process's own time: on a machine
    shared with other work, wall time counts theirs too)."""
    took = []
    for _ in range(rounds):
        t0 = time.process_time()
        for c in cs:
            fn(c)
        took.append((time.process_time() - t0) / len(cs) * 1e6)
    return statistics.median(took)


def cost(n: int = 2000, rounds: int = 3) -> dict[str, float]:
    """µs of CPU per complaint: today's keyword scan, the lexicon alone, the whole text step (with
    the model); the three are measured in turn, round by round, so that a change in the machine's load
    touches all three alike."""
    cs = complaints(n)
    scan = compile_pack(load_pack(KEYWORDS)).read
    pack = load_pack(WUSHEN)
    lexicon = enrichment_for(pack, model=False)
    full = enrichment_for(pack)
    has_model = any(e.name == "model" for e in full.enrichers)
    took: dict[str, list[float]] = {"keyword_scan_us": [], "lexicon_us": [], "text_step_us": []}
    for _ in range(rounds):
        for name, fn in (("keyword_scan_us", scan), ("lexicon_us", lexicon), ("text_step_us", full)):
            took[name].append(_per_complaint_us(fn, cs, 1))
    out = {
        "complaints": float(len(cs)),
        "mean_chars": statistics.mean(len(c.title) + len(c.text) for c in cs),
        **{name: statistics.median(v) for name, v in took.items()},
        "model": float(has_model),
    }
    out["ratio"] = out["text_step_us"] / out["keyword_scan_us"]
    return out


_RSS = """
import sys, resource
sys.path.insert(0, {service!r})
from fenliu import Triage, complaint_from_dict
def rss():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith('VmRSS')) / 1024
t = Triage.from_path({pack!r})
for i in range(200):
    t.decide(complaint_from_dict({{'id': str(i), 'text': '老板欠我们的工钱，说好年底结，到现在没给' + str(i)}}))
print(rss())
"""


def worker_memory(with_model: Path, without_model: Path) -> dict[str, float]:
    """RSS (MB) of a process that loaded the pack and decided 200 complaints, with and without the model."""
    out = {}
    for name, pack in (("with_model_mb", with_model), ("without_model_mb", without_model)):
        code = _RSS.format(service=str(ROOT / "service"), pack=str(pack))
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
        )
        out[name] = float(res.stdout.strip().splitlines()[-1])
    out["model_mb"] = out["with_model_mb"] - out["without_model_mb"]
    return out


def load_times(repeats: int = 3) -> dict[str, float]:
    """Milliseconds: the pack's first load (``Triage.from_path``: load, compile, lint, cases, floors)
    and a reload (``Triage.load``, median), with the model."""
    from fenliu import Triage

    t0 = time.perf_counter()
    triage = Triage.from_path(WUSHEN)
    first = (time.perf_counter() - t0) * 1000
    reloads = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = triage.load(WUSHEN)
        reloads.append((time.perf_counter() - t0) * 1000)
        if not result.ok:
            raise RuntimeError(result.summary())
    return {"first_load_ms": first, "reload_ms": statistics.median(reloads)}


def without_model_copy(dst: Path) -> Path:
    """A copy of the reference pack without its model (and without floors on the model); its lexicon
    decides at margin 3, as it did before the model took the close calls (its cases expect that)."""
    import shutil

    shutil.copytree(WUSHEN, dst, ignore=shutil.ignore_patterns("*.npz"))
    manifest = dst / "pack.yaml"
    lines = [
        ln
        for ln in manifest.read_text("utf-8").splitlines()
        if not ln.strip().startswith(("model:", "model_confidence:", "floors:"))
    ]
    lines = ["  margin: 3" if ln.strip().startswith("margin:") else ln for ln in lines]
    manifest.write_text("\n".join(lines) + "\n", "utf-8")
    return dst


def run(n: int, rounds: int, repeats: int) -> dict[str, Any]:
    import tempfile

    out: dict[str, Any] = {"cost": cost(n, rounds), "load": load_times(repeats)}
    with tempfile.TemporaryDirectory(prefix="fenliu-text-") as tmp:
        out["memory"] = worker_memory(WUSHEN, without_model_copy(Path(tmp) / "wushen"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.n, args.rounds, args.repeats), indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
