"""The text step as the lexicon grows (bench part ``lexicon``): 200 and 2,000 terms, the same pack otherwise.

    python -m bench.lexicon_growth [--n 2000] [--rounds 5]

:func:`write_pack` copies the reference pack and replaces its lexicon with one of exactly ``terms``
terms in the reference lexicon's shape: every category keeps its share of the terms (at least one),
drawn with a fixed seed from the reference lexicon's own terms (so they match citizens' words as the
real ones do), and ``against`` and ``together`` entries in the reference lexicon's proportion to its
terms (about 11% and 35%). When more terms are asked for than a category has, the rest are its terms
with a spoken ending appended (``…的事``, ``…问题``), which match less often, as a grown lexicon's
rarer entries do. Its model, floors and cases are left out: the pack is only read, never served or
tested, and the model (which reads the lexicon's scores as features) is the reference pack's, so the
text step does the same work per complaint apart from the lexicon.

Cost: CPU µs per complaint of the whole text step (``enrichment_for(pack)``: normalize, lexicon,
model) and of the lexicon alone (``model=False``), on the labelled corpus's texts (``bench.text``),
both packs interleaved round after round, median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "service")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from fenliu import Complaint, load_pack  # noqa: E402
from fenliu.engine.enrich import enrichment_for  # noqa: E402

WUSHEN = ROOT / "rules" / "wushen"
SIZES = (200, 2000)
SEED = 20261204
_ENDINGS = ("的事", "问题", "这事", "的情况")
_SCHEMA = "# yaml-language-server: $schema=../../../service/fenliu/schema/lexicon.schema.json\n"


def _reference() -> dict[str, dict[str, list[Any]]]:
    out = {}
    for f in sorted((WUSHEN / "lexicon").glob("*.yaml")):
        lex = yaml.safe_load(f.read_text("utf-8"))["lexicon"]
        out[lex["category"]] = {k: list(lex.get(k) or ()) for k in ("terms", "against", "together")}
    return out


def _shares(total: int, weights: dict[str, int]) -> dict[str, int]:
    """``total`` split in proportion to ``weights`` (largest remainders), at least 1 each."""
    cats = sorted(weights)
    whole = sum(weights.values())
    raw = {c: max(1.0, total * weights[c] / whole) for c in cats}
    out = {c: int(raw[c]) for c in cats}
    rest = total - sum(out.values())
    for c in sorted(cats, key=lambda c: raw[c] - out[c], reverse=True)[: max(0, rest)]:
        out[c] += 1
    while sum(out.values()) > total:  # the minimum of 1 pushed it over
        c = max(cats, key=lambda c: out[c])
        out[c] -= 1
    return out


def _pick(rng: random.Random, pool: list[Any], n: int, grow: Callable[[Any, int], Any] | None) -> list[Any]:
    if n <= len(pool):
        return rng.sample(pool, n)
    out = list(pool)
    k = 0
    while len(out) < n and grow is not None:
        out.append(grow(pool[k % len(pool)], k // len(pool)))
        k += 1
    return out[:n]


def _grown_term(entry: dict[str, Any], i: int) -> dict[str, Any]:
    return {"term": entry["term"] + _ENDINGS[i % len(_ENDINGS)], "weight": entry["weight"]}


def lexicon(terms: int, seed: int = SEED) -> dict[str, dict[str, list[Any]]]:
    """Per category its terms, against and together entries: ``terms`` terms in all."""
    ref = _reference()
    n_terms = sum(len(v["terms"]) for v in ref.values())
    ratio = {k: sum(len(v[k]) for v in ref.values()) / n_terms for k in ("against", "together")}
    shares = _shares(terms, {c: len(v["terms"]) for c, v in ref.items()})
    rng = random.Random(seed)
    out: dict[str, dict[str, list[Any]]] = {}
    for cat in sorted(ref):
        v, n = ref[cat], shares[cat]
        picked = _pick(rng, v["terms"], n, _grown_term)
        seen = {t["term"] for t in picked}
        against = [a for a in v["against"] if a["term"] not in seen]
        out[cat] = {
            "terms": picked,
            "against": _pick(rng, against, min(len(against), round(n * ratio["against"])), None),
            "together": _pick(
                rng, v["together"], min(len(v["together"]), round(n * ratio["together"])), None
            ),
        }
    return out


def write_pack(terms: int, dst: Path, seed: int = SEED) -> Path:
    """The reference pack with a lexicon of exactly ``terms`` terms (no floors, no cases)."""
    shutil.copytree(WUSHEN, dst, ignore=shutil.ignore_patterns("*_test.yaml", "text_floors.jsonl", "lexicon"))
    manifest = dst / "pack.yaml"
    lines = [ln for ln in manifest.read_text("utf-8").splitlines() if not ln.strip().startswith("floors:")]
    manifest.write_text("\n".join(lines) + "\n", "utf-8")
    (dst / "lexicon").mkdir()
    for cat, entries in lexicon(terms, seed).items():
        body: dict[str, Any] = {"category": cat, "terms": entries["terms"]}
        for k in ("together", "against"):
            if entries[k]:
                body[k] = entries[k]
        text = yaml.safe_dump({"lexicon": body}, allow_unicode=True, sort_keys=False, width=200)
        (dst / "lexicon" / f"{cat}.yaml").write_text(_SCHEMA + text, "utf-8")
    return dst


def _count(pack: Any, kind: str) -> int:
    return sum(1 for e in pack.lexicon if e.kind == kind)


def _us(fn: Callable[[Complaint], Any], cs: Sequence[Complaint]) -> float:
    t0 = time.process_time()
    for c in cs:
        fn(c)
    return (time.process_time() - t0) / len(cs) * 1e6


def measure(n: int = 2000, rounds: int = 5, sizes: Sequence[int] = SIZES) -> dict[str, Any]:
    """µs per complaint of the text step and of the lexicon alone, per lexicon size; interleaved."""
    from bench import text

    cs = text.complaints(n)
    with tempfile.TemporaryDirectory(prefix="fenliu-lexicon-") as tmp:
        packs = {k: load_pack(write_pack(k, Path(tmp) / f"lex{k}")) for k in sizes}
        steps = {  # the model is read from the pack's folder
            k: {"text_step": enrichment_for(p), "lexicon": enrichment_for(p, model=False)}
            for k, p in packs.items()
        }
    for k, p in packs.items():
        got = _count(p, "term")
        if got != k:
            raise RuntimeError(f"generated lexicon has {got} terms, not {k}")
    samples: dict[int, dict[str, list[float]]] = {k: {"text_step": [], "lexicon": []} for k in sizes}
    for k in sizes:  # one untimed pass each: first-call costs out of the rounds
        steps[k]["text_step"](cs[0])
    for _ in range(rounds):
        for k in sizes:
            for what, fn in steps[k].items():
                samples[k][what].append(_us(fn, cs))
    out: dict[str, Any] = {"complaints": len(cs), "rounds": rounds, "sizes": {}}
    for k in sizes:
        p = packs[k]
        out["sizes"][k] = {
            "terms": _count(p, "term"),
            "against": _count(p, "against"),
            "together": _count(p, "together"),
            "text_step_us": statistics.median(samples[k]["text_step"]),
            "lexicon_us": statistics.median(samples[k]["lexicon"]),
            "model": any(e.name == "model" for e in steps[k]["text_step"].enrichers),
        }
    lo, hi = min(sizes), max(sizes)
    a, b = out["sizes"][lo], out["sizes"][hi]
    out["ratio"] = b["text_step_us"] / a["text_step_us"]
    out["lexicon_ratio"] = b["lexicon_us"] / a["lexicon_us"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.n, args.rounds), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
