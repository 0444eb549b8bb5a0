"""``fenliu score PACK CORPUS.jsonl``: how well the pack reads categories from the citizen's words.

For the lexicon alone, the text model alone and both together (the pack's rules deciding, as served):
accuracy, per-category precision and recall, the worst confusions with an example each, the share
sent to a person (``unclassified``), the share sent to a wrong department (a category, not the right
one), and how often the right category is the first suggestion of those sent to a person.

The same measure gates a reload when the pack sets ``text.floors`` (:func:`check_floors`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from fenliu.authoring.train import Labelled, read_labelled
from fenliu.domain.errors import Problem
from fenliu.domain.model import LOCAL_TZ, UNCLASSIFIED, Complaint, Suggestion
from fenliu.engine.decider import Decider
from fenliu.engine.enrich import Enrichment, LexiconEnricher, ModelEnricher
from fenliu.i18n import N_, _
from fenliu.packs.types import Pack

WAYS: Final = ("lexicon", "model", "both")
#: How each way is named in the tables (the JSON keeps the codes above).
WAY_NAMES: Final = {"lexicon": N_("lexicon"), "model": N_("model"), "both": N_("both")}
_WHEN: Final = datetime(2026, 3, 1, 9, 0, tzinfo=LOCAL_TZ)
EXCERPT: Final = 36


@dataclass(slots=True)
class Report:
    """One way of reading (lexicon, model, both) over a labelled corpus."""

    way: str
    total: int = 0
    correct: int = 0
    to_person: int = 0
    wrong: int = 0  # given a category, not the right one
    suggested_first: int = 0  # sent to a person with a category expected: the first suggestion is right
    suggestable: int = 0  # sent to a person with a category expected
    got: Counter[str] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, item: Labelled, got: str, suggestions: Sequence[Suggestion]) -> None:
        want = item.category
        self.total += 1
        self.expected[want] += 1
        self.got[got] += 1
        if got == want:
            self.correct += 1
            self.hits[want] += 1
        else:
            self.confusions[(want, got)] += 1
            self.examples.setdefault((want, got), f"{item.id}: {_excerpt(item)}")
        if got == UNCLASSIFIED:
            self.to_person += 1
            if want != UNCLASSIFIED:
                self.suggestable += 1
                if suggestions and suggestions[0].category == want:
                    self.suggested_first += 1
        elif got != want:
            self.wrong += 1

    def share(self, n: int) -> float:
        return n / self.total if self.total else 0.0

    @property
    def accuracy(self) -> float:
        return self.share(self.correct)

    def precision(self, cat: str) -> float | None:
        return self.hits[cat] / self.got[cat] if self.got[cat] else None

    def recall(self, cat: str) -> float | None:
        return self.hits[cat] / self.expected[cat] if self.expected[cat] else None

    def to_dict(self, worst: int = 10) -> dict[str, Any]:
        cats = sorted(set(self.expected) | set(self.got))
        return {
            "way": self.way,
            "complaints": self.total,
            "accuracy": round(self.accuracy, 4),
            "to_person": round(self.share(self.to_person), 4),
            "wrong_department": round(self.share(self.wrong), 4),
            "right_first_suggestion": round(self.suggested_first / self.suggestable, 4)
            if self.suggestable
            else None,
            "categories": {
                c: {"precision": _r(self.precision(c)), "recall": _r(self.recall(c)), "n": self.expected[c]}
                for c in cats
            },
            "confusions": [
                {"expected": a, "got": b, "count": n, "example": self.examples[(a, b)]}
                for (a, b), n in self.confusions.most_common(worst)
            ],
        }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _excerpt(item: Labelled) -> str:
    s = " ".join((item.title + " " + item.text).split())
    return s if len(s) <= EXCERPT else s[: EXCERPT - 1] + "…"


def _complaint(item: Labelled) -> Complaint:
    return Complaint(id=item.id[:128], received_at=_WHEN, title=item.title, text=item.text)


def score(pack: Pack, items: Sequence[Labelled], decider: Decider | None = None) -> dict[str, Report]:
    """Each way of reading over ``items``; the model only when the pack has one."""
    own = decider is None
    d = decider if decider is not None else Decider(pack, backend="python", memoize=False)
    try:
        full = d.enrichment
        # the decider's own lexicon scorer, not a second one built again (at every load and reload)
        lexicons = [e for e in full.enrichers if isinstance(e, LexiconEnricher)]
        lexicon_only = Enrichment(lexicons)
        # the lexicon first: one pass gives the lexicon alone and both (Enrichment.through)
        one_pass = bool(lexicons) and list(full.enrichers[: len(lexicons)]) == lexicons
        has_model = any(isinstance(e, ModelEnricher) for e in full.enrichers)
        reports = {w: Report(w) for w in WAYS if has_model or w == "lexicon"}
        for item in items:
            c = _complaint(item)
            if one_pass:
                alone, enriched = full.through(c, len(lexicons))
            else:
                alone, enriched = lexicon_only(c), (full(c) if has_model else c)
            lx = d.decide(alone)
            reports["lexicon"].add(item, lx.outcome.category, lx.suggestions)
            if not has_model:
                continue
            got = enriched.model_category if enriched.model_confident else UNCLASSIFIED
            ev = enriched.evidence
            ranked = [Suggestion(cat, p) for cat, p in (ev.model if ev else ()) if cat != UNCLASSIFIED][:3]
            reports["model"].add(item, got, ranked)
            both = d.decide(enriched)
            reports["both"].add(item, both.outcome.category, both.suggestions)
        return reports
    finally:
        if own:
            d.close()


def to_markdown(reports: dict[str, Report], corpus: str, worst: int = 8) -> str:
    """The tables docs/text.md shows (generated by ``fenliu score --markdown``)."""
    ways = list(reports)
    first = reports[ways[0]]
    lines = [_("Corpus `{corpus}`: {n} complaints.").format(corpus=corpus, n=first.total), ""]
    lines.append("| | " + " | ".join(_(WAY_NAMES[w]) for w in ways) + " |")
    lines.append("|---|" + "---:|" * len(ways))
    rows: list[tuple[str, Any]] = [
        (_("accuracy"), lambda r: _pct(r.accuracy)),
        (_("sent to a person (unclassified)"), lambda r: _pct(r.share(r.to_person))),
        (_("wrong department"), lambda r: _pct(r.share(r.wrong))),
        (
            _("right category first among the suggestions, when sent to a person"),
            lambda r: _pct(r.suggested_first / r.suggestable) if r.suggestable else "—",
        ),
    ]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(fn(reports[w]) for w in ways) + " |")
    lines += ["", _("Per category, precision / recall:"), ""]
    lines.append("| " + _("category") + " | n | " + " | ".join(_(WAY_NAMES[w]) for w in ways) + " |")
    lines.append("|---|---:|" + "---:|" * len(ways))
    for cat in sorted(first.expected):
        cells = [f"{_pct(reports[w].precision(cat))} / {_pct(reports[w].recall(cat))}" for w in ways]
        lines.append(f"| {cat} | {first.expected[cat]} | " + " | ".join(cells) + " |")
    last = reports[ways[-1]]
    lines += [
        "",
        _("Worst confusions ({way}):").format(way=_(WAY_NAMES[ways[-1]])),
        "",
        "| " + " | ".join((_("expected"), _("got"), "n", _("example"))) + " |",
        "|---|---|---:|---|",
    ]
    for (a, b), n in last.confusions.most_common(worst):
        lines.append(f"| {a} | {b} | {n} | {last.examples[(a, b)].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def read_split(path: Path, split: str) -> list[Labelled]:
    items = read_labelled(path.read_text("utf-8").splitlines())
    return [x for x in items if x.split == split] if split else items


def check_floors(pack: Pack, decider: Decider) -> list[Problem]:
    """The pack's ``text.floors`` on its test split: a problem (file, reason) for each one missed."""
    floors = pack.text.floors
    if not floors:
        return []
    where = (pack.text.file, pack.text.line, "", "text-floor")
    path = (pack.text.root or pack.root) / str(floors["corpus"])
    try:
        items = read_split(path, str(floors.get("split", "test")))
    except (OSError, ValueError) as e:
        return [
            Problem(
                *where,
                _("the floors' corpus {corpus} cannot be read: {reason}").format(
                    corpus=floors["corpus"], reason=e
                ),
            )
        ]
    if not items:
        return [
            Problem(
                *where,
                _("the floors' corpus {corpus} has no complaints of its split").format(
                    corpus=floors["corpus"]
                ),
            )
        ]
    reports = score(pack, items, decider)
    problems = []
    for way in ("lexicon", "model", "both"):
        key = "combined" if way == "both" else way
        if key in floors:
            if way not in reports:
                problems.append(
                    Problem(
                        *where,
                        _("a floor for the {way} is set, but the pack has no model").format(
                            way=_(WAY_NAMES[way])
                        ),
                    )
                )
                continue
            acc = reports[way].accuracy
            if acc < float(floors[key]):
                problems.append(
                    Problem(
                        *where,
                        _("{floor_key} accuracy {accuracy} on {corpus} is below its floor {floor}").format(
                            floor_key=key,
                            accuracy=f"{acc:.1%}",
                            corpus=floors["corpus"],
                            floor=f"{float(floors[key]):.1%}",
                        ),
                    )
                )
    if "wrong_department" in floors:
        r = reports["both"] if "both" in reports else reports["lexicon"]
        wrong = r.share(r.wrong)
        if wrong > float(floors["wrong_department"]):
            problems.append(
                Problem(
                    *where,
                    _("{share} sent to a wrong department, above the ceiling {ceiling}").format(
                        share=f"{wrong:.1%}", ceiling=f"{float(floors['wrong_department']):.1%}"
                    ),
                )
            )
    return problems


def main(pack_path: str, corpus: str, *, split: str = "", as_json: bool = False, jobs: int = 1) -> int:
    from fenliu.packs.load import load_pack

    pack = load_pack(pack_path)
    if jobs > 1:  # every core, the same report (fenliu.replay)
        import sys

        from fenliu.authoring import replay
        from fenliu.authoring.diff import Progress

        path = Path(corpus)
        show = Progress(replay.count_lines(path), sys.stderr, label="score") if sys.stderr.isatty() else None
        reports = replay.score_file(pack_path, path, split=split, jobs=jobs, progress=show)
    else:
        reports = score(pack, read_split(Path(corpus), split))
    if as_json:
        print(json.dumps({w: r.to_dict() for w, r in reports.items()}, ensure_ascii=False, indent=2))
    else:
        print(to_markdown(reports, corpus + (f" (split {split})" if split else "")), end="")
    return 0
