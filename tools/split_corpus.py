"""Merge labelled complaints into corpus/labelled.jsonl with a fixed train/test split.

    .venv/bin/python tools/split_corpus.py PART.jsonl [PART.jsonl ...] [--out corpus/labelled.jsonl]

A complaint whose title and text repeat an earlier one's is dropped. Each line keeps its fields and
gets ``split``: ``test`` or ``train``. A line that has a split already (the complaints of
corpus/labelled.jsonl) keeps it: adding complaints never moves one between the splits, so a model or a
lexicon tuned on the train split never meets its own material in the test split. The lines without
one are split among themselves, stratified per category and depending only on the ids: within a
category, they are ordered by the SHA-256 of their id, and the first 20 % (rounded) are the test split.
The same input always gives the same file, byte for byte.

    .venv/bin/python tools/split_corpus.py corpus/labelled.jsonl part-c.jsonl part-d.jsonl --out corpus/labelled.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

TEST_SHARE = 0.2


def split(items: list[dict[str, object]]) -> list[dict[str, object]]:
    by_cat: dict[str, list[dict[str, object]]] = {}
    ids: set[str] = set()
    for it in items:
        cid = str(it["id"])
        if cid in ids:
            raise SystemExit(f"duplicate id {cid}")
        ids.add(cid)
        by_cat.setdefault(str(it["category"]), []).append(it)
    test: set[str] = {str(it["id"]) for it in items if it.get("split") == "test"}
    for group in by_cat.values():
        new = [it for it in group if it.get("split") not in ("test", "train")]
        ranked = sorted(new, key=lambda it: hashlib.sha256(str(it["id"]).encode()).hexdigest())
        test.update(str(it["id"]) for it in ranked[: round(TEST_SHARE * len(ranked))])
    return [{**it, "split": "test" if str(it["id"]) in test else "train"} for it in items]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="+")
    ap.add_argument("--out", default="corpus/labelled.jsonl")
    args = ap.parse_args(argv)
    items = []
    for part in args.parts:
        for n, line in enumerate(Path(part).read_text("utf-8").splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except ValueError:
                    print(f"{part}:{n}: not JSON", file=sys.stderr)
                    return 1
    seen: set[tuple[str, str]] = set()
    kept = []
    for it in items:  # the same words twice teach and measure nothing new: the first is kept
        words = (str(it.get("title") or ""), str(it.get("text") or ""))
        if words in seen:
            print(f"dropped {it['id']}: the same title and text as an earlier complaint", file=sys.stderr)
            continue
        seen.add(words)
        kept.append(it)
    out = split(kept)
    with open(args.out, "w", encoding="utf-8") as f:
        for it in out:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    n_test = sum(1 for it in out if it["split"] == "test")
    print(f"{len(out)} complaints, {n_test} test, {len(out) - n_test} train -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
