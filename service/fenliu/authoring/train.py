"""``fenliu train PACK CORPUS.jsonl``: learn the pack's text model from labelled complaints.

A linear model over character n-grams (:func:`fenliu.engine.text.ngrams`, 1 and 2 characters, TF-IDF with
sublinear term frequency, L2-normalized) and multinomial logistic regression (scikit-learn), written
into the pack as plain arrays (:func:`fenliu.engine.text.save_model`): its bytes are then part of the pack's
digest, it is loaded with the pack and gated at reload like every rule. Only lines whose ``split`` is
``train`` are read when the corpus has a ``split`` field: the test split is never seen.

scikit-learn is imported here only; the service reads the model with NumPy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fenliu.domain.model import UNCLASSIFIED
from fenliu.engine.text import (
    NGRAM_RANGE,
    Lexicon,
    TextModel,
    categories_digest,
    complaint_text,
    ngrams,
    save_model,
)
from fenliu.i18n import _
from fenliu.packs.types import Pack

#: Regularization (inverse strength) of the logistic regression; chosen by cross-validation on the
#: train split (docs/text.md).
C = 20.0
#: An n-gram is a feature when at least this many complaints of the train split have it (chosen by
#: cross-validation on the train split, docs/text.md: 3 reads as well as 2 with two thirds fewer features).
MIN_DF = 3
#: The lexicon's category scores may enter the model as extra features, each times this; 0 (the
#: default): the model reads the n-grams only. The lexicon was written reading the train split, so
#: cross-validation on that split overrates features made from it; on the test split and the holdout
#: (docs/text.md) the model that reads the words alone is right more often, and it is a second opinion
#: independent of the lexicon.
LEXICON_SCALE = 0.0


@dataclass(frozen=True, slots=True)
class Labelled:
    id: str
    title: str
    text: str
    category: str
    split: str
    why: str = ""


def read_labelled(lines: Iterable[str]) -> list[Labelled]:
    """Labelled complaints from JSON lines (``id``, ``title``, ``text``, ``category``, optional ``split``)."""
    out: list[Labelled] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(_("line {n}: not JSON ({reason})").format(n=n, reason=e.msg)) from None
        if not isinstance(d, dict) or not isinstance(d.get("category"), str):
            raise ValueError(_("line {n}: a labelled complaint needs a category").format(n=n))
        out.append(
            Labelled(
                str(d.get("id", n)),
                str(d.get("title") or ""),
                str(d.get("text") or ""),
                d["category"],
                str(d.get("split") or ""),
                str(d.get("why") or ""),
            )
        )
    return out


def train_split(items: list[Labelled]) -> list[Labelled]:
    return [x for x in items if x.split == "train"] if any(x.split for x in items) else items


def fit(
    items: list[Labelled],
    pack: Pack,
    *,
    c: float = C,
    lexicon_scale: float = LEXICON_SCALE,
    min_df: int = MIN_DF,
    class_weight: str | None = None,
) -> TextModel:
    """Learn a model from ``items`` (every one of them: choose the split before). Deterministic: the
    same complaints, in whatever order, give the same model (they are read in the order of their ids)."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    known = set(pack.categories) | {UNCLASSIFIED}
    bad = sorted({x.category for x in items if x.category not in known})
    if bad:
        raise ValueError(
            _("the corpus names categories the pack does not have: {categories}").format(
                categories=", ".join(bad[:5])
            )
        )
    items = sorted(items, key=lambda x: (x.id, x.category, x.title, x.text))
    texts = [complaint_text(x.title, x.text) for x in items]
    vec = TfidfVectorizer(analyzer=ngrams, sublinear_tf=True, min_df=min_df, dtype=np.float32)
    matrix = vec.fit_transform(texts)
    lexicon = Lexicon(pack.lexicon) if pack.lexicon and lexicon_scale > 0 else None
    lex_cats: tuple[str, ...] = lexicon.categories if lexicon is not None else ()
    if lexicon is not None:
        matrix = sp.hstack([matrix, sp.csr_matrix(lexicon_features(lexicon, texts, lexicon_scale))]).tocsr()
    clf = LogisticRegression(C=c, max_iter=2000, class_weight=class_weight)
    clf.fit(matrix, [x.category for x in items])
    n = len(vec.vocabulary_)
    coef = np.asarray(clf.coef_.T, dtype=np.float32)
    vocab: dict[str, int] = {str(k): int(v) for k, v in vec.vocabulary_.items()}
    meta: dict[str, Any] = {
        "pack": pack.name,
        "revision": pack.revision,
        "categories": categories_digest(pack.categories),
        "ngram_range": list(NGRAM_RANGE),
        "trained_on": len(items),
        "c": c,
        "min_df": min_df,
        "lexicon_scale": lexicon_scale if lex_cats else 0.0,
    }
    return TextModel(
        tuple(str(k) for k in clf.classes_),
        vocab,
        np.asarray(vec.idf_, dtype=np.float32),
        np.ascontiguousarray(coef[:n]),
        np.asarray(clf.intercept_, dtype=np.float32),
        meta,
        lex_cats,
        np.ascontiguousarray(coef[n:]),
        lexicon_scale if lex_cats else 0.0,
    )


def lexicon_features(lexicon: Lexicon, texts: list[str], scale: float) -> npt.NDArray[np.float32]:
    """The lexicon features of each text (rows), as :meth:`fenliu.text.TextModel.lexicon_vector`
    makes them at run time: each category's score, floored at 0, times ``scale``."""
    out = np.zeros((len(texts), len(lexicon.categories)), dtype=np.float32)
    col = {cat: j for j, cat in enumerate(lexicon.categories)}
    for i, t in enumerate(texts):
        for s in lexicon.score(t):
            if s.score > 0:
                out[i, col[s.category]] = s.score * scale
    return out


def cross_validate(items: list[Labelled], pack: Pack, *, folds: int = 5, **settings: Any) -> dict[str, float]:
    """``folds``-fold cross-validation of :func:`fit` with ``settings`` on ``items`` (the train split):
    the share whose most probable category is right (``top``); with the pack's ``model_confidence``,
    the model alone (``model``: right; ``model_wrong``: a wrong category) and the lexicon and model
    together as the reference pack combines them (``both``, ``both_wrong``: the lexicon's category
    when it is confident, else the model's when it is confident, else unclassified). Stratified folds,
    shuffled with a fixed seed: the same items give the same numbers."""
    from sklearn.model_selection import StratifiedKFold

    from fenliu.engine.text import decide_lexicon

    items = sorted(items, key=lambda x: (x.id, x.category, x.title, x.text))
    labels = [x.category for x in items]
    texts = [complaint_text(x.title, x.text) for x in items]
    lexicon = Lexicon(pack.lexicon) if pack.lexicon else None
    t = pack.text
    lexicon_says = [
        decide_lexicon(lexicon.score(x), t.threshold, t.margin) if lexicon else ("", False) for x in texts
    ]
    n = {"top": 0, "model": 0, "model_wrong": 0, "both": 0, "both_wrong": 0}
    split = StratifiedKFold(folds, shuffle=True, random_state=0).split(texts, labels)
    for train_idx, test_idx in split:
        model = fit([items[i] for i in train_idx], pack, **settings)
        for i in test_idx:
            scores = [(s.category, s.score) for s in lexicon.score(texts[i])] if lexicon else []
            probs = model.predict(texts[i], scores)
            best = model.classes[int(np.argmax(probs))]
            said = best if best != UNCLASSIFIED and probs.max() >= t.model_confidence else UNCLASSIFIED
            cat, confident = lexicon_says[i]
            both = cat if confident else said
            want = labels[i]
            n["top"] += best == want
            n["model"] += said == want
            n["model_wrong"] += said not in (want, UNCLASSIFIED)
            n["both"] += both == want
            n["both_wrong"] += both not in (want, UNCLASSIFIED)
    return {k: v / len(items) for k, v in n.items()}


def main(pack_path: str, corpus: str, out: str = "", c: float = C) -> int:
    from fenliu.packs.load import load_pack

    pack = load_pack(pack_path)
    items = train_split(read_labelled(Path(corpus).read_text("utf-8").splitlines()))
    model = fit(items, pack, c=c)
    target = Path(out) if out else (pack.root / (pack.text.model or "text_model.npz"))
    save_model(target, model)
    print(
        _("trained on {n} complaints, {grams} n-grams, {classes} classes").format(
            n=len(items), grams=len(model.vocabulary), classes=len(model.classes)
        )
    )
    print(_("wrote {path}").format(path=target))
    if not pack.text.model:
        print(
            _("add to {path}/pack.yaml:  {line}").format(
                path=pack_path, line=f"text: {{model: {target.name}}}"
            )
        )
    return 0


#: The settings ``python -m fenliu.authoring.train PACK CORPUS`` compares (docs/text.md shows its table).
CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("n-grams in 2+ complaints, C 20 (before)", {"min_df": 2}),
    ("n-grams in 1+ complaints", {"min_df": 1}),
    ("n-grams in 3+ complaints (chosen)", {}),
    ("n-grams in 4+ complaints", {"min_df": 4}),
    ("3+, C 10", {"c": 10.0}),
    ("3+, C 50", {"c": 50.0}),
    ("3+, classes weighted by their rarity", {"class_weight": "balanced"}),
    ("3+, with the lexicon's scores as features (x 0.02, before)", {"lexicon_scale": 0.02}),
)


def cv_table(pack_path: str, corpus: str, folds: int = 5) -> str:
    """The cross-validation of :data:`CANDIDATES` on the corpus's train split, as a Markdown table."""
    from fenliu.packs.load import load_pack

    pack = load_pack(pack_path)
    items = train_split(read_labelled(Path(corpus).read_text("utf-8").splitlines()))
    rows = [
        f"{folds}-fold cross-validation on the train split ({len(items)} complaints; "
        f"model_confidence {pack.text.model_confidence}, threshold {pack.text.threshold:g}, "
        f"margin {pack.text.margin:g}):",
        "",
        "| settings | most probable | model | model: wrong department | both | both: wrong department |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, settings in CANDIDATES:
        r = cross_validate(items, pack, folds=folds, **settings)
        rows.append(
            f"| {name} | {r['top']:.1%} | {r['model']:.1%} | {r['model_wrong']:.1%} "
            f"| {r['both']:.1%} | {r['both_wrong']:.1%} |"
        )
        print(rows[-1], flush=True)
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import sys

    print(cv_table(sys.argv[1], sys.argv[2]))
