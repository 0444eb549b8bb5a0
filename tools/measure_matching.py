"""Which text similarity separates same-matter pairs from different-matter pairs (docs/matters.md).

    .venv/bin/python tools/measure_matching.py [corpus/matter_pairs.jsonl]

For each way of comparing two complaints' words — shingles of 1, 2, 3 or 1+2 characters; Jaccard or
containment (overlap over the smaller set); exact, MinHash-estimated (64 and 128 permutations) or
SimHash (64 bits) — it finds the content-only threshold that keeps false links among *same village,
different matter* pairs at or below 1 %, and reports the recall of the pairs that must link by content
alone (a relative; the same person without a shared identifier), and how similar the most similar
*same person, different matter* pair is.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from datasketch import MinHash

from fenliu.matter import signature as sg

Shingler = Callable[[str], set[str]]


def grams(sizes: tuple[int, ...], stop: bool) -> Shingler:
    def f(text: str) -> set[str]:
        t = sg.normalize(text)
        out = set()
        for n in sizes:
            for i in range(len(t) - n + 1):
                g = t[i : i + n]
                if not (n == 1 and stop and g in sg.STOP_CHARS):
                    out.add(g)
        return out

    return f


def exact(kind: str) -> Callable[[set[str], set[str]], float]:
    def f(a: set[str], b: set[str]) -> float:
        if not a or not b:
            return 0.0
        inter = len(a & b)
        return inter / len(a | b) if kind == "jaccard" else inter / min(len(a), len(b))

    return f


def minhash(kind: str, perms: int) -> Callable[[set[str], set[str]], float]:
    def sig(s: set[str]) -> np.ndarray:
        m = MinHash(num_perm=perms, seed=1, scheme="affine32")
        m.update_batch([x.encode() for x in s])
        return np.asarray(m.hashvalues)

    def f(a: set[str], b: set[str]) -> float:
        if not a or not b:
            return 0.0
        j = float(np.mean(sig(a) == sig(b)))
        if kind == "jaccard":
            return j
        return min(1.0, j * (len(a) + len(b)) / ((1 + j) * min(len(a), len(b))))

    return f


def simhash(a: set[str], b: set[str]) -> float:
    def h(s: set[str]) -> int:
        v = np.zeros(64)
        for x in s:
            bits = int.from_bytes(hashlib.blake2b(x.encode(), digest_size=8).digest(), "big")
            v += np.array([1 if bits >> i & 1 else -1 for i in range(64)])
        return sum(1 << i for i in range(64) if v[i] > 0)

    return 1 - bin(h(a) ^ h(b)).count("1") / 64 if a and b else 0.0


def main() -> int:
    path = (
        sys.argv[1]
        if len(sys.argv) > 1
        else str(Path(__file__).resolve().parents[1] / "corpus" / "matter_pairs.jsonl")
    )
    with open(path, encoding="utf-8") as f:
        pairs = [json.loads(x) for x in f]
    content_only = [
        p
        for p in pairs
        if p["same_matter"] and not ({*p["a"]["complainant"].values()} & {*p["b"]["complainant"].values()})
    ]
    village_neg = [p for p in pairs if p["kind"] == "same_village_other_matter"]
    person_neg = [p for p in pairs if p["kind"] == "same_person_other_matter"]
    shinglers = {
        "1": grams((1,), True),
        "2": grams((2,), False),
        "3": grams((3,), False),
        "1+2": grams((1, 2), True),
    }
    methods: dict[str, Callable[[set[str], set[str]], float]] = {
        "Jaccard exact": exact("jaccard"),
        "containment exact": exact("containment"),
        "Jaccard MinHash-64": minhash("jaccard", 64),
        "containment MinHash-64": minhash("containment", 64),
        "containment MinHash-128": minhash("containment", 128),
        "SimHash-64": simhash,
    }
    print(
        f"{len(content_only)} content-only same-matter pairs, {len(village_neg)} same-village different-matter pairs"
    )
    print(
        "| shingles | similarity | threshold (≤1 % false links) | content-only recall | max same-person other matter |"
    )
    print("|---|---|---:|---:|---:|")
    for sname, shg in shinglers.items():
        for mname, m in methods.items():
            if mname.startswith("SimHash") and sname != "1+2":
                continue
            if "MinHash" in mname and sname not in ("1", "1+2"):
                continue

            def score(p: dict[str, Any], m: Callable[..., float] = m, shg: Shingler = shg) -> float:
                return m(shg(p["a"]["text"]), shg(p["b"]["text"]))

            neg = sorted(score(p) for p in village_neg)
            thr = neg[min(len(neg) - 1, int(len(neg) * 0.99))]
            rec = sum(score(p) > thr for p in content_only) / len(content_only)
            worst = max(score(p) for p in person_neg)
            print(f"| {sname} | {mname} | {thr:.3f} | {rec:.3f} | {worst:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
