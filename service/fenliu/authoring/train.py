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
from fenliu.packs.types import Pack

#: Regularization (inverse strength) of the logistic regression; chosen by cross-validation on the
#: train split (docs/text.md).
C = 20.0
MIN_DF = 2
#: The lexicon's category scores enter the model as extra features, each times this (a lexicon score
#: of 10 weighs about as much as a fifth of the text's normalized n-grams); chosen by cross-validation
#: on the train split (docs/text.md). 0: the model reads the n-grams only.
LEXICON_SCALE = 0.02


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
            raise ValueError(f"line {n}: not JSON ({e.msg})") from None
        if not isinstance(d, dict) or not isinstance(d.get("category"), str):
            raise ValueError(f"line {n}: a labelled complaint needs a category")
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
    items: list[Labelled], pack: Pack, *, c: float = C, lexicon_scale: float = LEXICON_SCALE
) -> TextModel:
    """Learn a model from ``items`` (every one of them: choose the split before)."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    known = set(pack.categories) | {UNCLASSIFIED}
    bad = sorted({x.category for x in items if x.category not in known})
    if bad:
        raise ValueError(f"the corpus names categories the pack does not have: {', '.join(bad[:5])}")
    texts = [complaint_text(x.title, x.text) for x in items]
    vec = TfidfVectorizer(analyzer=ngrams, sublinear_tf=True, min_df=MIN_DF, dtype=np.float32)
    matrix = vec.fit_transform(texts)
    lexicon = Lexicon(pack.lexicon) if pack.lexicon and lexicon_scale > 0 else None
    lex_cats: tuple[str, ...] = lexicon.categories if lexicon is not None else ()
    if lexicon is not None:
        matrix = sp.hstack([matrix, sp.csr_matrix(lexicon_features(lexicon, texts, lexicon_scale))]).tocsr()
    clf = LogisticRegression(C=c, max_iter=2000)
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
        "min_df": MIN_DF,
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


def main(pack_path: str, corpus: str, out: str = "", c: float = C) -> int:
    from fenliu.packs.load import load_pack

    pack = load_pack(pack_path)
    items = train_split(read_labelled(Path(corpus).read_text("utf-8").splitlines()))
    model = fit(items, pack, c=c)
    target = Path(out) if out else (pack.root / (pack.text.model or "text_model.npz"))
    save_model(target, model)
    print(
        f"trained on {len(items)} complaints, {len(model.vocabulary)} n-grams, {len(model.classes)} classes"
    )
    print(f"wrote {target}")
    if not pack.text.model:
        print(f"add to {pack_path}/pack.yaml:  text: {{model: {target.name}}}")
    return 0
