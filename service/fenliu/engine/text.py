"""Reading the citizen's own words: the pack's lexicon scored, and its learned text model applied.

Both work on the title and text together, NFKC-normalized and case-folded
(:func:`fenliu.compiling.compiler.normalize_text`), once per complaint, before the engine runs
(:mod:`fenliu.engine.enrich` puts what they find into the complaint as fields rules test).

* :class:`Lexicon` scores every category: the sum of the weights of its distinct terms found in the text
  (plain substrings), of its ``together`` entries whose words are all found in one sentence (split at
  ``。!?;`` and line breaks, after normalization: ``！？；`` are their full-width forms), minus the
  weights of its ``against`` terms found. One Aho-Corasick pass finds every word of every category.
* :class:`TextModel` is a linear model over character n-grams (TF-IDF, then one weight per n-gram and
  category, softmax), learned by :mod:`fenliu.authoring.train` and stored in the pack as a NumPy ``.npz`` of plain
  arrays, loaded here without pickle. The n-grams a text is cut into are :func:`ngrams`, the same
  function training uses, so the model applied here is the one that was learned
  (``tests/test_text.py`` checks it against scikit-learn's own prediction).

Knows nothing of rules, the engine or the transport.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

import ahocorasick_rs
import numpy as np
import numpy.typing as npt

from fenliu.compiling.compiler import normalize_text
from fenliu.domain.errors import PackError, Problem
from fenliu.domain.model import Counted
from fenliu.packs.types import LexiconEntry, Pack

#: Sentence ends, after normalization (NFKC turns ！？； into !?;).
_SENTENCE_END: Final = re.compile(r"[。!?;\n]")

_DIGITS: Final = re.compile(r"[0-9]")
_HAS_DIGIT: Final = _DIGITS.search
_MAX: Final = np.maximum.reduce
_SUM: Final = np.add.reduce
#: What the trace never shows of the model's n-grams: digits, Latin letters (pieces of ids, phones).
_SHAPED: Final = re.compile(r"[0-9a-z]")

#: The format of a model file; a file of another format is refused.
MODEL_FORMAT: Final = "fenliu-text-model/1"
#: Character n-grams the model reads (chosen by cross-validation on the train split, docs/text.md;
#: :meth:`TextModel.vector` finds 1- and 2-grams as integers).
NGRAM_RANGE: Final = (1, 2)


def complaint_text(title: str, text: str) -> str:
    """The normalized title and text, as the lexicon and the model read them."""
    return normalize_text(title + "\n" + text) if (title or text) else ""


# ---------------------------------------------------------------------------------------------------
# The lexicon


class Scored(NamedTuple):
    """A category's score in one text, and the entries that made it (a tuple: made for every
    category found in every complaint, it is built at a tuple's cost)."""

    category: str
    score: float
    counted: tuple[Counted, ...]


class Lexicon:
    """A pack's lexicon, prepared for scoring (one automaton over every word of every category)."""

    def __init__(self, entries: Sequence[LexiconEntry]) -> None:
        self.entries = tuple(entries)
        self.categories = tuple(dict.fromkeys(e.category for e in self.entries))
        words: dict[str, int] = {}
        for e in self.entries:
            for w in e.words:
                words.setdefault(normalize_text(w), len(words))
        self.words = tuple(words)
        # word index -> the entries it alone completes (terms, against), and the together-entries it is in
        self._single: list[list[int]] = [[] for _ in self.words]
        self._joint: list[list[int]] = [[] for _ in self.words]
        self._needs: list[frozenset[int]] = []
        for i, e in enumerate(self.entries):
            ids = frozenset(words[normalize_text(w)] for w in e.words)
            self._needs.append(ids)
            if e.kind == "together":
                for j in ids:
                    self._joint[j].append(i)
            else:
                (only,) = ids
                self._single[only].append(i)
        self._automaton = ahocorasick_rs.AhoCorasick(list(self.words)) if self.words else None
        # per entry: its category, its signed weight, and how the trace shows it
        self._info = [
            (
                e.category,
                -e.weight if e.kind == "against" else e.weight,
                Counted(e.label, -e.weight if e.kind == "against" else e.weight, e.source),
            )
            for e in self.entries
        ]
        self._order = {c: n for n, c in enumerate(self.categories)}

    def found(self, text: str) -> list[int]:
        """The entries that count in a normalized text (indexes into ``entries``, ascending)."""
        if not text or self._automaton is None:
            return []
        hits = self._automaton.find_matches_as_indexes(text, overlapping=True)
        if not hits:
            return []
        single, joint = self._single, self._joint
        out: set[int] = set()
        starts: dict[int, list[int]] = {}  # a word of a together-entry -> where it was found
        for w, start, _end in hits:
            if single[w]:
                out.update(single[w])
            if joint[w]:
                starts.setdefault(w, []).append(start)
        if starts:
            candidates = {i for w in starts for i in joint[w]}
            ends = [m.start() for m in _SENTENCE_END.finditer(text)]
            if not ends:  # one sentence: a together-entry counts when all its words are found
                out.update(i for i in candidates if self._needs[i] <= starts.keys())
            else:
                # word -> the sentences it is in (a sentence: the text up to and with its end)
                seen = {w: {bisect.bisect_left(ends, x) for x in xs} for w, xs in starts.items()}
                for i in candidates:
                    need = self._needs[i]
                    if need <= seen.keys() and set.intersection(*(seen[w] for w in need)):
                        out.add(i)
        return sorted(out)

    def score(self, text: str) -> list[Scored]:
        """Every category with a matched entry, best first (ties: the lexicon's order of categories)."""
        ids = self.found(text)
        if not ids:
            return []
        totals: dict[str, float] = {}
        counted: dict[str, list[Counted]] = {}
        info = self._info
        for i in ids:
            cat, w, shown = info[i]
            totals[cat] = totals.get(cat, 0.0) + w
            counted.setdefault(cat, []).append(shown)
        out = [Scored(cat, total, tuple(counted[cat])) for cat, total in totals.items()]
        order = self._order
        out.sort(key=lambda s: (-s.score, order[s.category]))
        return out


def decide_lexicon(scored: Sequence[Scored], threshold: float, margin: float) -> tuple[str, bool]:
    """(the best category or "", whether it passes the threshold and beats the runner-up by the margin)."""
    if not scored or scored[0].score <= 0:
        return "", False
    best = scored[0].score
    second = scored[1].score if len(scored) > 1 else 0.0
    return scored[0].category, best >= threshold and best - max(second, 0.0) >= margin


# ---------------------------------------------------------------------------------------------------
# The text model

#: :func:`_gram_key`: the first character's code point shifted by this, or'ed with the second's plus 1.
_SHIFT: Final = 22


def _sublinear_tf(n: int) -> npt.NDArray[np.float32]:
    """``1 + log(count)`` in float32 for the counts 0 .. n-1 (0 is never looked up), computed as
    scikit-learn computes it (``np.log`` over float32 counts, then 1 added)."""
    out = np.arange(n, dtype=np.float32)
    out[0] = 1.0
    np.log(out, out=out)
    out += np.float32(1.0)
    return out


def _gram_key(g: str) -> int:
    """An n-gram of 1 or 2 characters as an integer that sorts as the n-gram does (a character sorts
    before every pair it begins)."""
    return (ord(g[0]) << _SHIFT) | (ord(g[1]) + 1 if len(g) > 1 else 0)


def ngrams(text: str) -> list[str]:
    """The character n-grams of a normalized text that the model reads (whitespace runs as one space)."""
    s = _DIGITS.sub("0", " ".join(text.split()))  # numbers read as their shape, never their digits
    lo, hi = NGRAM_RANGE
    out: list[str] = []
    n_chars = len(s)
    for n in range(lo, hi + 1):
        out.extend(s[i : i + n] for i in range(n_chars - n + 1))
    return out


class ModelError(Exception):
    """A model file that cannot be used: missing, corrupt, of another format or another pack."""


@dataclass(slots=True)
class TextModel:
    """A linear model over TF-IDF character n-grams: ``softmax(W · tfidf(text) + b)``."""

    classes: tuple[str, ...]
    vocabulary: dict[str, int]
    idf: npt.NDArray[np.float32]
    weights: npt.NDArray[np.float32]  # n_features × n_classes
    intercept: npt.NDArray[np.float32]
    meta: dict[str, Any]
    # The lexicon's category scores as extra features (floored at 0, times ``lexicon_scale``): the
    # categories in order, and one weight per category and class (``len(lexicon) × n_classes``).
    lexicon: tuple[str, ...] = ()
    lexicon_weights: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.zeros((0, 0), dtype=np.float32)
    )
    lexicon_scale: float = 0.0
    _features: tuple[str, ...] = ()
    # Each n-gram as an integer that sorts as the n-gram does (:func:`_gram_key`), in ascending order,
    # and the feature each one is: a text's n-grams are looked up all at once (np.searchsorted). A
    # model trained here numbers its features in that same order (scikit-learn sorts its vocabulary),
    # so the position found is the feature (``_key_feature`` is then ``None``).
    _keys: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _key_feature: npt.NDArray[np.intp] | None = None
    _lexicon_row: dict[str, int] = field(default_factory=dict)
    _sublinear: npt.NDArray[np.float32] = field(default_factory=lambda: _sublinear_tf(256))

    def __post_init__(self) -> None:
        keys = np.array([_gram_key(g) for g in self.vocabulary], dtype=np.int64)
        feats = np.array(list(self.vocabulary.values()), dtype=np.intp)
        order = np.argsort(keys, kind="stable")
        # a last key above every n-gram's: a search never runs past the end
        self._keys = np.append(keys[order], np.int64(np.iinfo(np.int64).max))
        feats = feats[order]
        in_order = bool((feats == np.arange(len(feats))).all())
        self._key_feature = None if in_order else feats
        self._lexicon_row = {c: i for i, c in enumerate(self.lexicon)}

    def lexicon_vector(self, scores: Iterable[tuple[str, float]]) -> npt.NDArray[np.float32]:
        """The lexicon features from a text's (category, score) pairs: ``scale · max(score, 0)``."""
        out = np.zeros(len(self.lexicon), dtype=np.float32)
        row = self._lexicon_row
        for cat, score in scores:
            i = row.get(cat)
            if i is not None and score > 0:
                out[i] = score * self.lexicon_scale
        return out

    def vector(self, text: str) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        """The text's features: (indexes, ascending; TF-IDF values, L2-normalized; sublinear term
        frequency). The n-grams are those of :func:`ngrams`, as integers (:func:`_gram_key`), sorted,
        looked up at once and counted as runs (``tests/test_text.py`` holds this equal, bit for bit,
        to a plain count of :func:`ngrams`)."""
        s = " ".join(text.split())
        keys = self._keys
        if not s or len(keys) < 2:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float32)
        if _HAS_DIGIT(s):
            s = _DIGITS.sub("0", s)
        cps = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        first = cps << _SHIFT
        grams = np.concatenate((first, first[:-1] | (cps[1:] + 1)))
        grams.sort()
        pos = keys.searchsorted(grams)
        hit = pos[keys[pos] == grams]
        if not len(hit):
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float32)
        if self._key_feature is not None:  # features numbered in another order than their n-grams
            hit = np.sort(self._key_feature[hit])
        # hit is sorted: each run of one feature is its count
        edge = np.empty(len(hit) + 1, dtype=np.bool_)
        edge[0] = edge[-1] = True
        np.not_equal(hit[1:], hit[:-1], out=edge[1:-1])
        bounds = edge.nonzero()[0]
        idx: npt.NDArray[np.intp] = hit[bounds[:-1]].astype(np.intp, copy=False)
        counts = bounds[1:] - bounds[:-1]
        table = self._sublinear
        if len(grams) >= len(table) and int(counts.max()) >= len(table):  # a very long text
            table = _sublinear_tf(int(counts.max()) + 1)
        vals: npt.NDArray[np.float32] = table[counts] * self.idf[idx]
        # the norm in float32 (a float32 rounded from the float64 root is the float32 root)
        norm = np.float32(math.sqrt(float(vals @ vals)))
        return idx, (vals / norm) if norm else vals

    def predict(self, text: str, lexicon: Iterable[tuple[str, float]] = ()) -> npt.NDArray[np.float64]:
        """The probability of each class (in ``classes`` order); ``lexicon``: the text's lexicon scores,
        (category, score), when the model reads them (``self.lexicon``)."""
        idx, vals = self.vector(text)
        z = self.intercept + vals @ self.weights[idx] if len(idx) else self.intercept.copy()
        if self.lexicon:
            row = self._lexicon_row
            found = [(row[cat], score) for cat, score in lexicon if score > 0 and cat in row]
            if found:  # the lexicon features, as lexicon_vector makes them
                lex = np.zeros(len(self.lexicon), dtype=np.float32)
                for i, score in found:
                    lex[i] = score * self.lexicon_scale
                z = z + lex @ self.lexicon_weights
        # z.max() and e.sum() without their wrappers: the same reductions
        e = np.exp(z - _MAX(z))
        out: npt.NDArray[np.float64] = (e / _SUM(e)).astype(np.float64)
        return out

    def explain(self, text: str, cls: int, top: int = 5) -> tuple[tuple[str, float], ...]:
        """The n-grams that pushed the text most towards class ``cls``: (n-gram, push), largest first."""
        idx, vals = self.vector(text)
        if not len(idx):
            return ()
        push = vals * self.weights[idx, cls]
        if not self._features:
            feats = [""] * len(self.vocabulary)
            for g, j in self.vocabulary.items():
                feats[j] = g
            self._features = tuple(feats)
        out: list[tuple[str, float]] = []
        for k in np.argsort(-push):
            if push[k] <= 0 or len(out) >= top:
                break
            g = self._features[int(idx[k])]
            if g.strip() and not _SHAPED.search(g):  # never a piece of a number, id or phone
                out.append((g, round(float(push[k]), 3)))
        return tuple(out)


def save_model(path: Path, model: TextModel) -> None:
    """Write a model as an ``.npz`` of plain arrays (no pickled objects)."""
    feats = [""] * len(model.vocabulary)
    for g, j in model.vocabulary.items():
        feats[j] = g
    meta = dict(model.meta, format=MODEL_FORMAT, lexicon_scale=model.lexicon_scale)
    with path.open("wb") as f:
        np.savez_compressed(
            f,
            meta=np.array(json.dumps(meta, ensure_ascii=False, sort_keys=True)),
            classes=np.array(model.classes),
            features=np.array(feats),
            idf=model.idf.astype(np.float32),
            weights=model.weights.astype(np.float32),
            intercept=model.intercept.astype(np.float32),
            lexicon=np.array(model.lexicon, dtype=np.str_),
            lexicon_weights=model.lexicon_weights.astype(np.float32).reshape(
                len(model.lexicon), len(model.classes)
            ),
        )


def load_model(path: Path, *, pack_name: str, categories: Iterable[str]) -> TextModel:
    """Read a model file written by :func:`save_model`. Raises :class:`ModelError` saying why not."""
    if not path.is_file():
        raise ModelError("the model file is missing (run fenliu train)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("meta", "classes", "features", "idf", "weights", "intercept")}
            # a model that reads the lexicon's scores too (absent: it reads the n-grams only)
            lexicon = [str(c) for c in z["lexicon"].tolist()] if "lexicon" in z.files else []
            lexicon_weights = z["lexicon_weights"] if "lexicon_weights" in z.files else None
    except KeyError as e:
        raise ModelError(f"the model file lacks {e}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ModelError(f"the model file is corrupt ({type(e).__name__})") from None
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError:
        raise ModelError("the model file's metadata is corrupt") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"the model file is not of format {MODEL_FORMAT}")
    if meta.get("pack") != pack_name:
        raise ModelError(f"the model was trained for pack '{meta.get('pack')}', not '{pack_name}'")
    if meta.get("categories") != categories_digest(known := list(categories)):
        raise ModelError("the model was trained for another version of the pack (its categories changed)")
    if tuple(meta.get("ngram_range", ())) != NGRAM_RANGE:
        raise ModelError("the model reads other n-grams than this version of fenliu")
    classes = tuple(str(c) for c in arrays["classes"].tolist())
    feats = [str(g) for g in arrays["features"].tolist()]
    idf, weights, intercept = arrays["idf"], arrays["weights"], arrays["intercept"]
    n, k = len(feats), len(classes)
    if idf.shape != (n,) or weights.shape != (n, k) or intercept.shape != (k,) or k < 2:
        raise ModelError("the model file's arrays do not fit together")
    if not (np.isfinite(idf).all() and np.isfinite(weights).all() and np.isfinite(intercept).all()):
        raise ModelError("the model file holds numbers that are not finite")
    unknown = [c for c in classes if c not in known and c != "unclassified"]
    if unknown:
        raise ModelError(f"the model names categories this pack does not have: {', '.join(unknown[:5])}")
    if lexicon_weights is None or not lexicon:
        lexicon, lexicon_weights = [], np.zeros((0, k), dtype=np.float32)
    if lexicon_weights.shape != (len(lexicon), k) or not np.isfinite(lexicon_weights).all():
        raise ModelError("the model file's lexicon weights do not fit its classes")
    stray = [c for c in lexicon if c not in known]
    if stray:
        raise ModelError(f"the model reads lexicon scores of categories this pack does not have: {stray[0]}")
    scale = meta.get("lexicon_scale", 0.0)
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise ModelError("the model file's lexicon_scale is not a number of 0 or more")
    vocabulary = {g: j for j, g in enumerate(feats)}
    if len(vocabulary) != n:
        raise ModelError("the model file's features repeat")
    return TextModel(
        classes,
        vocabulary,
        idf.astype(np.float32),
        np.ascontiguousarray(weights, dtype=np.float32),
        intercept.astype(np.float32),
        meta,
        tuple(lexicon),
        np.ascontiguousarray(lexicon_weights, dtype=np.float32),
        float(scale),
    )


def categories_digest(categories: Iterable[str]) -> str:
    """What a model is tied to: the pack's set of categories."""
    return hashlib.sha256("\n".join(sorted(categories)).encode()).hexdigest()[:12]


def pack_model(pack: Pack) -> TextModel | None:
    """The pack's model, or ``None`` when it names none. Raises :class:`PackError` naming the file."""
    t = pack.text
    if not t.model or t.model_path is None:
        return None
    try:
        return load_model(t.model_path, pack_name=t.layer or pack.name, categories=pack.categories)
    except ModelError as e:
        raise PackError([Problem(t.model_file, 0, "", "text-model", str(e))]) from None


def softmax_top(probs: npt.NDArray[np.float64], classes: Sequence[str], n: int) -> list[tuple[str, float]]:
    """The ``n`` most probable classes, best first (ties: the classes' order)."""
    order: list[int] = np.argsort(-probs, kind="stable")[:n].tolist()
    p: list[float] = probs.tolist()
    return [(classes[i], p[i]) for i in order if not math.isnan(p[i])]
