"""Compile a checked :class:`~fenliu.packs.load.Pack` into a plan the engine evaluates.

What is done once, here, so that a decision does not:

* **Features.** Keywords and patterns are matched in Python, once per complaint, against the title and
  text together (NFKC-normalized, case-folded). The engine then tests plain booleans. This also keeps
  the engine's regex operator, which gets alternation wrong and leaks memory on reload, out of use.
* **Facts.** Each stage asserts one small fact holding only the fields its rules test. Field names are
  flattened (``region.township_code`` → ``region__township_code``). Every tested field is always
  present, so negation never depends on a field being missing; a keyword group or pattern is left out
  only when it is false and no rule of the stage needs it false.
* **Conditions.** Each rule keeps its condition in the neutral form the pack gives it
  (:mod:`fenliu.packs.types`: ``Test Keywords Pattern Not All AnyOf``). Nothing here knows an engine's
  dialect or limits: a matcher lowers the conditions itself (durable_rules:
  :mod:`fenliu.engine.durable_lowering`) and says at pack load what it cannot run.
* **Classes of input.** Every outcome depends only on a finite abstraction of the complaint: for each
  numeric field, where its value falls among the pack's thresholds; for each text field, which of the
  pack's constants it equals (if any); the keyword groups present; enums and booleans as they are.
  The class key :meth:`CompiledPack.read` gives for a complaint is that abstraction, which makes
  memoizing sound.
"""

from __future__ import annotations

import bisect
import operator
import re
import unicodedata
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, TypeAlias

import ahocorasick_rs

from fenliu.domain import fields as F
from fenliu.domain.model import Complaint
from fenliu.packs.types import All, AnyOf, Cond, Keywords, Not, Pack, Pattern, Rule, Test, iter_tests

_OTHER: Final = "\x00other"
_NOTHING: Final[frozenset[str]] = frozenset()


def _ascii_forms() -> dict[str, str]:
    """Characters whose compatibility decomposition is plain ASCII (full-width letters and punctuation,
    the ideographic space, the ellipsis, ...), from the blocks where Chinese text meets them."""
    blocks = ((0x00A0, 0x0100), (0x2000, 0x2070), (0x3000, 0x3001), (0xFE10, 0xFE70), (0xFF00, 0xFFF0))
    forms: dict[str, str] = {}
    for lo, hi in blocks:
        for cp in range(lo, hi):
            ch = chr(cp)
            d = unicodedata.normalize("NFKD", ch)
            if d != ch and d.isascii():
                forms[ch] = d
    return forms


_ASCII_FORMS: Final = _ascii_forms()
_ASCII_FORM_RX: Final = re.compile("[" + re.escape("".join(_ASCII_FORMS)) + "]")


def normalize_text(s: str) -> str:
    """NFKC, then case-folded.

    Chinese text is rarely NFKC as written: its full-width punctuation is not. Those characters are
    first replaced by their decompositions (plain ASCII, which never reorders or composes), which
    leaves the NFKC form unchanged and usually makes the text NFKC already, so the full normalization
    is skipped. ``tests/test_normalize.py`` holds this equal to ``unicodedata.normalize``.
    """
    for ch in set(_ASCII_FORM_RX.findall(s)):  # a few distinct ones, however often each occurs
        s = s.replace(ch, _ASCII_FORMS[ch])
    if not unicodedata.is_normalized("NFKC", s):
        s = unicodedata.normalize("NFKC", s)
    return s.casefold()


def fact_name(field_name: str) -> str:
    """A field's name in a fact (``region.township_code`` → ``region__township_code``)."""
    return field_name.replace(".", "__")


#: A value a fact holds: a complaint or decision field's, a table column's (lists of codes as tuples).
FactValue: TypeAlias = str | int | float | bool | tuple[str, ...] | None
#: What a stage's rules are matched against: field (by :func:`fact_name`) or feature → its value.
Fact: TypeAlias = dict[str, FactValue]


#: A field's value reduced to its class: where a number falls among thresholds (an int), which constant
#: a value equals (or none of them), or the value itself.
Abstractor: TypeAlias = Callable[[FactValue], FactValue]
#: The class of a complaint's input (:meth:`CompiledPack.read`): (keyword groups found, as bits; the
#: hint ignored; the hint's category; the class of each complaint field rules read; each pattern).
ClassKey: TypeAlias = tuple[int, bool, str, *tuple[FactValue, ...]]
#: The class of what a stage matches, or of what one part of its candidates matches: the candidates'
#: bits first, then what they read (see :meth:`CompiledPack.match_key`).
StageKey: TypeAlias = tuple[Hashable, ...]
#: (the fact's values as read, their classes, the class key) -> the class of what a stage matches
MatchKey: TypeAlias = Callable[[list[FactValue], list[FactValue], ClassKey], StageKey]
#: (the candidate rules' bits, the classes, the class key) -> ([(a part's class, its candidates' bits)],
#: the candidates sure to fire, in no part)
MatchParts: TypeAlias = Callable[[int, list[FactValue], ClassKey], tuple[list[tuple[StageKey, int]], int]]


@dataclass(slots=True)
class StagePlan:
    name: str
    index: int
    rules: list[Rule]
    fields: list[str]  # field names (dotted) the stage's rules test, excluding features
    features: list[str]  # keyword/pattern feature names the stage's rules test
    fact_names: list[tuple[str, str]] = field(default_factory=list)  # (field, name in the engine's fact)
    negated: frozenset[str] = frozenset()  # features some rule of the stage requires to be false
    # per field in ``fields``: its class among this stage's own constants (see _stage_abstractor)
    abstractors: list[Abstractor | None] = field(default_factory=list)
    # the class of what the stage matches, and its parts: see CompiledPack.match_key
    match_key: MatchKey | None = None
    match_parts: MatchParts | None = None

    def __post_init__(self) -> None:
        self.fact_names = [(name, fact_name(name)) for name in self.fields]


@dataclass(slots=True)
class CompiledPack:
    pack: Pack
    stages: list[StagePlan]
    keyword_index: dict[tuple[str, ...], str]  # normalized sorted words -> feature name
    keyword_of: dict[tuple[str, ...], str]  # a `keywords:` list as written -> its feature name
    keyword_groups: dict[str, frozenset[str]]  # feature -> normalized words
    patterns: dict[str, re.Pattern[str]]  # feature -> compiled regex
    pattern_index: dict[str, str]  # regex source -> feature
    words: tuple[str, ...]  # every distinct normalized keyword
    rule_words: dict[str, tuple[str, ...]]  # rule id -> its normalized keywords
    hint_codes: dict[str, str]  # normalized hint -> category code
    complaint_fields: list[str]  # complaint fields any rule tests or copies
    abstractors: list[tuple[str, Abstractor]] = field(default_factory=list)
    word_mask: dict[str, int] = field(default_factory=dict)  # normalized keyword -> bits of its groups
    _read_fields: Callable[[Complaint], tuple[FactValue, ...]] = field(default=lambda c: ())
    _abstract: list[tuple[int, Abstractor]] = field(default_factory=list)
    # Where things are in a class key: each keyword group's bit of key[0], and the position of the
    # hint, of each complaint field and of each pattern (see read()).
    _bit: dict[str, int] = field(default_factory=dict)
    _position: dict[str, int] = field(default_factory=dict)
    _automaton: ahocorasick_rs.AhoCorasick | None = None

    # -- per complaint ---------------------------------------------------------------------------------
    def read(self, c: Complaint) -> tuple[ClassKey, frozenset[str]]:
        """Complaint → (its class key, the keywords present in its title and text).

        The class key is the finite class of input the complaint belongs to (see the module docstring):
        ``(keyword groups, hint ignored, category_hint, complaint fields..., patterns...)``, where the
        keyword groups that matched are one bit each of an integer and each complaint field rules read
        is reduced by its abstractor. Which words matched is told per decision, outside the outcome.
        """
        text = normalize_text(c.title + "\n" + c.text) if (c.title or c.text) else ""
        present = (
            frozenset(self.automaton.find_matches_as_strings(text, overlapping=True))
            if text and self.words
            else _NOTHING
        )
        mask = 0
        word_mask = self.word_mask
        for w in present:
            mask |= word_mask[w]
        hint = normalize_text(c.category_hint).strip() if c.category_hint else ""
        code = self.hint_codes.get(hint, "") if hint else ""
        fields = list(self._read_fields(c))
        for i, fn in self._abstract:
            fields[i] = fn(fields[i])
        fields.extend([bool(text) and rx.search(text) is not None for rx in self.patterns.values()])
        return (mask, bool(hint) and not code, code, *fields), present

    def values(self, c: Complaint, key: ClassKey) -> Fact:
        """The complaint fields rules may read, by name, as given, and the resolved hint. (Keyword
        groups and patterns are read from :meth:`read`'s key: :meth:`feature_reader`.)"""
        values = dict(zip(self.complaint_fields, self._read_fields(c), strict=True))
        values["category_hint"] = key[2]
        return values

    def feature_reader(
        self, names: list[str], negated: frozenset[str] = frozenset()
    ) -> Callable[[ClassKey, Fact], None]:
        """For a stage reading the keyword groups and patterns ``names``: how to put them, as a class
        key holds them, into a fact. (The class of what a stage matches: :meth:`match_key`.)

        A fact gets the features that are true; a false one only if it is in ``negated`` (a rule needs
        it false): an absent property fails ``== true`` just as ``false`` does, and the engine has fewer
        properties to match. Only the set bits are visited, not every group of the stage.
        """
        bits, places = self._bit, self._position
        mask = 0
        for n in names:
            if n in bits:
                mask |= 1 << bits[n]
        by_bit = {bits[n]: n for n in names if n in bits}
        false_groups = [(n, bits[n]) for n in names if n in bits and n in negated]
        pats = [(n, places[n], n in negated) for n in names if n not in bits]

        def into(key: ClassKey, fact: Fact) -> None:
            m = key[0] & mask
            while m:
                low = m & -m
                fact[by_bit[low.bit_length() - 1]] = True
                m ^= low
            for n, b in false_groups:
                if not key[0] >> b & 1:
                    fact[n] = False
            for n, p, neg in pats:
                v = bool(key[p])
                if v or neg:
                    fact[n] = v

        return into

    def match_key(self, plan: StagePlan) -> tuple[MatchKey, MatchParts]:
        """For ``plan``: the class of what its rules match, from its fact's values (``raw``, as read, in
        ``plan.fields`` order), their classes (``classes``, by ``plan.abstractors``) and the class key.

        Only some of a stage's rules can fire on a fact: a rule one of whose conditions (``when`` is
        their conjunction) asks for a keyword group that is absent, or for a value of the stage's most
        tested field that the fact does not have, cannot. The rules that can are the *candidates*; what
        the stage matches depends only on which rules they are and on what they read. So the class is
        (the candidates, the classes of their fields, their keyword groups and patterns): two facts
        that differ only in what no candidate reads are one class. Exact whatever the rules are: a rule
        without such a condition is always a candidate.

        Also how the candidates split into parts that read nothing in common (but the value sieved
        on): each part's (class, the candidates in it), so what each part matches can be remembered on
        its own. The candidates' bits come first in both keys: a key always tells which rules it is of.
        A rule whose only condition is a keyword group is a candidate exactly when that group is found,
        and then it fires: such candidates are in no part, and are told apart as sure to fire.
        """
        rules = plan.rules
        position = {name: i for i, name in enumerate(plan.fields)}
        # What each rule reads, as bits of integers: fields (by position in ``plan.fields``), keyword
        # groups (as in the class key), patterns (by position in the class key).
        field_bits: list[int] = []
        word_bits: list[int] = []
        pattern_bits: list[int] = []
        for r in rules:
            fbits = wbits = pbits = 0
            for leaf in iter_tests(r.when):
                if isinstance(leaf, Test):
                    fbits |= 1 << position[leaf.field]
                elif isinstance(leaf, Keywords):
                    wbits |= 1 << self._bit[self.keyword_of[leaf.words]]
                else:
                    pbits |= 1 << self._position[self.pattern_index[leaf.regex]]
            field_bits.append(fbits)
            word_bits.append(wbits)
            pattern_bits.append(pbits)

        def conditions(r: Rule) -> tuple[Cond, ...]:
            return r.when.items if isinstance(r.when, All) else (r.when,)

        tested: dict[str, int] = {}
        for r in rules:
            for c in conditions(r):
                if isinstance(c, Test) and c.op in ("eq", "in") and _single_valued(c.field):
                    tested[c.field] = tested.get(c.field, 0) + 1
        disc = max(tested, key=lambda f: (tested[f], f)) if tested else None
        # Two sieves, each a set of rules as bits of an integer: the rules that pass the keyword
        # condition (those without one always do), and those that pass the value condition.
        no_word = no_value = sure = 0
        by_bit: dict[int, int] = {}
        by_value: dict[FactValue, int] = {}
        for i, r in enumerate(rules):
            conds = conditions(r)
            if len(conds) == 1 and isinstance(conds[0], Keywords):
                sure |= 1 << i
            kw = next((c for c in conds if isinstance(c, Keywords)), None)
            if kw is None:
                no_word |= 1 << i
            else:
                b = self._bit[self.keyword_of[kw.words]]
                by_bit[b] = by_bit.get(b, 0) | 1 << i
            t = next(
                (c for c in conds if isinstance(c, Test) and c.field == disc and c.op in ("eq", "in")), None
            )
            if t is None:
                no_value |= 1 << i
            else:
                for v in t.value if t.op == "in" else (t.value,):
                    by_value[v] = by_value.get(v, 0) | 1 << i
        guarded = 0
        for b in by_bit:
            guarded |= 1 << b
        at = position[disc] if disc is not None and by_value else -1
        Layout = tuple[Callable[[list[FactValue]], tuple[FactValue, ...]], int, tuple[int, ...]]
        layouts: dict[int, Layout] = {}  # a set of rules -> what they read
        shapes: dict[tuple[int, int, int], Layout] = {}  # what is read, as bits -> how to read it

        def layout(cand: int) -> Layout:
            fmask = bits = pmask = 0
            m = cand
            while m:
                low = m & -m
                i = low.bit_length() - 1
                fmask |= field_bits[i]
                bits |= word_bits[i]
                pmask |= pattern_bits[i]
                m ^= low
            lay = shapes.get((fmask, bits, pmask))
            if lay is None:
                idx = [i for i in range(fmask.bit_length()) if fmask >> i & 1]
                get: Callable[[list[FactValue]], tuple[FactValue, ...]]
                if not idx:
                    get = _no_values
                elif len(idx) == 1:
                    only = idx[0]
                    get = lambda classes: (classes[only],)  # noqa: E731
                else:
                    get = operator.itemgetter(*idx)
                pats = tuple(q for q in range(pmask.bit_length()) if pmask >> q & 1)
                if len(shapes) >= _LAYOUTS_MAX:
                    shapes.clear()
                lay = shapes[(fmask, bits, pmask)] = (get, bits, pats)
            if len(layouts) >= _LAYOUTS_MAX:
                layouts.clear()
            layouts[cand] = lay
            return lay

        whole = layout((1 << len(rules)) - 1)  # what the stage reads

        def key_of(raw: list[FactValue], classes: list[FactValue], key: ClassKey) -> StageKey:
            cand = no_word
            m = key[0] & guarded
            while m:
                low = m & -m
                cand |= by_bit[low.bit_length() - 1]
                m ^= low
            if at >= 0:
                cand &= no_value | by_value.get(raw[at], 0)
                lay = layouts.get(cand) or layout(cand)
            else:
                # Sieved by keywords alone, the candidates are about as many as the groups found: the
                # class holds what any rule of the stage reads (finer, as exact) instead of working out
                # what each new set of candidates reads.
                lay = whole
            get, bits, pats = lay
            if pats:
                return (cand, get(classes), key[0] & bits, *[bool(key[p]) for p in pats])
            return (cand, get(classes), key[0] & bits)

        # Parts: rules that share no field (but those below), keyword group or pattern match
        # independently, so what each part matches is remembered on its own (see Decider._evaluate).
        parent = list(range(len(rules)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        # Fields that do not join rules into one part (each part's class still has them where its
        # rules read them): the sieved field, and yes/no fields, which split a class in two at most.
        sieved = 1 << at if at >= 0 else 0
        for name, i in position.items():
            ftype = _field_type(name)
            if ftype is not None and ftype.kind == "bool":
                sieved |= 1 << i
        owner: dict[tuple[int, int], int] = {}
        for i in range(len(rules)):
            shared: list[tuple[int, int]] = []
            for kind, b in enumerate((field_bits[i] & ~sieved, word_bits[i], pattern_bits[i])):
                while b:
                    low = b & -b
                    shared.append((kind, low))
                    b ^= low
            for x in shared:
                j = owner.setdefault(x, i)
                parent[root(i)] = root(j)
        part_mask: list[int] = [0] * len(rules)
        for i in range(len(rules)):
            part_mask[root(i)] |= 1 << i
        part_of = [part_mask[root(i)] for i in range(len(rules))]
        index = plan.index

        def parts_of(
            cand: int, classes: list[FactValue], key: ClassKey
        ) -> tuple[list[tuple[StageKey, int]], int]:
            out = []
            words = key[0]
            m = cand & ~sure
            while m:
                low = m & -m
                sub = cand & part_of[low.bit_length() - 1]
                m &= ~sub
                lay = layouts.get(sub) or layout(sub)
                get, bits, pats = lay
                if pats:
                    out.append(((index, sub, get(classes), words & bits, *[bool(key[p]) for p in pats]), sub))
                else:
                    out.append(((index, sub, get(classes), words & bits), sub))
            return out, cand & sure

        return key_of, parts_of

    def projection(self, names: list[str]) -> Callable[[ClassKey], Hashable]:
        """What a reader of ``names`` (complaint fields, keyword groups, patterns) sees of a class key.
        Other names (decision fields, table columns) are ignored."""
        mask = 0
        for n in names:
            if n in self._bit:
                mask |= 1 << self._bit[n]
        idx = sorted({self._position[n] for n in names if n in self._position})
        if not idx:
            return lambda key: key[0] & mask
        get = operator.itemgetter(*idx)
        if not mask:
            return get
        return lambda key: (key[0] & mask, get(key))

    @property
    def automaton(self) -> ahocorasick_rs.AhoCorasick:
        """Every keyword of the pack in one Aho-Corasick automaton: one pass over a text finds them
        all, overlapping ones included (房屋 inside 房屋质量)."""
        if self._automaton is None:
            self._automaton = ahocorasick_rs.AhoCorasick(sorted(self.words))
        return self._automaton

    def __post_init__(self) -> None:
        plain = [n for n in self.complaint_fields if not n.startswith("region.")]
        # complaint_fields list region.* first (compile_pack), so a read is (*region codes, *attributes)
        regional = [n[7:] for n in self.complaint_fields if n.startswith("region.")]
        get_plain: Callable[[Complaint], tuple[FactValue, ...]] = (
            (operator.attrgetter(*plain) if len(plain) > 1 else (lambda c: (getattr(c, plain[0]),)))
            if plain
            else (lambda c: ())
        )
        if not regional:
            self._read_fields = get_plain
        else:
            keys = regional

            def read_fields(c: Complaint) -> tuple[FactValue, ...]:
                region = c.region
                return (*[region.get(k, "") for k in keys], *get_plain(c))

            self._read_fields = read_fields
        self._abstract = [(i, fn) for i, (_name, fn) in enumerate(self.abstractors) if fn is not _identity]
        self._bit = {feat: i for i, feat in enumerate(self.keyword_groups)}
        self._position = {"category_hint": 2}
        self._position.update({name: 3 + i for i, name in enumerate(self.complaint_fields)})
        first = 3 + len(self.complaint_fields)
        self._position.update({feat: first + j for j, feat in enumerate(self.patterns)})
        for feat, words in self.keyword_groups.items():
            for w in words:
                self.word_mask[w] = self.word_mask.get(w, 0) | 1 << self._bit[feat]


# ---------------------------------------------------------------------------------------------------


def compile_pack(pack: Pack) -> CompiledPack:
    keyword_index: dict[tuple[str, ...], str] = {}
    keyword_of: dict[tuple[str, ...], str] = {}
    keyword_groups: dict[str, frozenset[str]] = {}
    pattern_index: dict[str, str] = {}
    patterns: dict[str, re.Pattern[str]] = {}
    rule_words: dict[str, tuple[str, ...]] = {}
    all_words: set[str] = set()
    for r in pack.rules:
        words: list[str] = []
        for leaf in iter_tests(r.when):
            if isinstance(leaf, Keywords):
                norm = tuple(sorted({normalize_text(w) for w in leaf.words}))
                if norm not in keyword_index:
                    feat = f"kw_{len(keyword_index)}"
                    keyword_index[norm] = feat
                    keyword_groups[feat] = frozenset(norm)
                keyword_of[leaf.words] = keyword_index[norm]
                words += [normalize_text(w) for w in leaf.words]
                all_words.update(norm)
            elif isinstance(leaf, Pattern) and leaf.regex not in pattern_index:
                feat = f"re_{len(pattern_index)}"
                pattern_index[leaf.regex] = feat
                patterns[feat] = re.compile(leaf.regex)
        if words:
            rule_words[r.id] = tuple(dict.fromkeys(words))

    # A hint names a category (its code or its name). The default category is what no rule
    # classified (``unclassified``, 未分类): a hint naming it classifies nothing, so it is no valid hint.
    hint_codes: dict[str, str] = {}
    for code, row in pack.categories.items():
        if code == pack.defaults.get("category"):
            continue
        hint_codes[normalize_text(code)] = code
        if isinstance(row.get("name"), str):
            hint_codes[normalize_text(row["name"])] = code

    # Complaint fields read by tests or copies; their constants for the class abstraction.
    constants: dict[str, set[FactValue]] = {}
    copied: set[str] = set()
    for r in pack.rules:
        for leaf in iter_tests(r.when):
            if isinstance(leaf, Test) and leaf.field in F.COMPLAINT_FIELDS:
                vals = leaf.value if leaf.op in ("in", "not_in") else (leaf.value,)
                constants.setdefault(leaf.field, set()).update(vals)
        for v in r.then.values():
            if v.kind == "copy" and v.source in F.COMPLAINT_FIELDS:
                copied.add(v.source)
    # region.* first: see CompiledPack.__post_init__
    complaint_fields = sorted(
        (set(constants) | copied) - {"category_hint"}, key=lambda n: (not n.startswith("region."), n)
    )

    abstractors: list[tuple[str, Abstractor]] = []
    for name in complaint_fields:
        ftype = F.COMPLAINT_FIELDS[name]
        if name in copied or ftype.kind in ("enum", "bool"):
            abstractors.append((name, _identity))
        elif ftype.numeric:
            abstractors.append((name, _band(_numbers(constants[name]))))
        else:
            abstractors.append((name, _membership(frozenset(constants[name]))))

    compiled = CompiledPack(
        pack,
        [],
        keyword_index,
        keyword_of,
        keyword_groups,
        patterns,
        pattern_index,
        tuple(sorted(all_words)),
        rule_words,
        hint_codes,
        complaint_fields,
        abstractors,
    )

    for si, stage in enumerate(pack.stages):
        rules = [r for r in pack.rules if r.stage == stage]
        fields_: set[str] = set()
        feats: set[str] = set()
        constants_of: dict[str, set[FactValue]] = {}
        negated: set[str] = set()
        for r in rules:
            for leaf in iter_tests(r.when):
                if isinstance(leaf, Test):
                    fields_.add(leaf.field)
                    vals = leaf.value if leaf.op in ("in", "not_in") else (leaf.value,)
                    constants_of.setdefault(leaf.field, set()).update(vals)
                elif isinstance(leaf, Keywords):
                    feats.add(keyword_of[leaf.words])
                else:
                    feats.add(pattern_index[leaf.regex])
            negated |= _required_false(r.when, compiled)[1]
        plan = StagePlan(stage, si, rules, sorted(fields_), sorted(feats))
        plan.negated = frozenset(negated)
        plan.abstractors = [_stage_abstractor(name, constants_of.get(name, set())) for name in plan.fields]
        plan.match_key, plan.match_parts = compiled.match_key(plan)
        compiled.stages.append(plan)
    return compiled


_LAYOUTS_MAX: Final = 4096  # per stage: sets of candidates whose reads are remembered


def _field_type(name: str) -> F.FieldType | None:
    """A complaint or decision field's type; ``None`` for a table column."""
    return F.COMPLAINT_FIELDS.get(name) or F.DECISION_FIELDS.get(name)


def _single_valued(name: str) -> bool:
    """Whether a field's values are single, hashable values (not a list of codes, not a table column,
    whose cells may hold anything)."""
    ftype = _field_type(name)
    return ftype is not None and ftype.kind != "codes"


def _no_values(classes: list[FactValue]) -> tuple[FactValue, ...]:
    return ()


def _stage_abstractor(name: str, constants: set[FactValue]) -> Abstractor | None:
    """How a field a stage tests is reduced to its class *for that stage*: where a number falls among
    the stage's thresholds, which of the stage's constants a text, code or enum equals (or none of
    them). What the stage's rules match depends only on these classes, so they key the memory of its
    matching, coarser than the pack-wide classes of :meth:`CompiledPack.read` (a category no rule of
    the stage names is one class). ``None``: kept as it is (booleans, lists, durations, table columns).
    """
    ftype = _field_type(name)
    if ftype is None or not constants:
        return None
    if ftype.numeric:
        return _band(_numbers(constants))
    if ftype.kind in ("enum", "code", "text"):
        return _membership(frozenset(constants))
    return None


def _numbers(constants: set[FactValue]) -> list[float]:
    """A numeric field's constants (numbers: the pack's types are checked at load), sorted."""
    return sorted(float(x) for x in constants if isinstance(x, int | float))


def _identity(v: FactValue) -> FactValue:
    return v


def _band(thresholds: list[float]) -> Abstractor:
    ts = sorted(set(thresholds))
    exact = frozenset(ts)

    def band(v: FactValue) -> FactValue:  # below the i-th threshold: 2i; equal to it: 2i + 1
        x = float(v)  # type: ignore[arg-type]  # a numeric field's value (validated, and a constant's)
        return bisect.bisect_left(ts, x) * 2 + (x in exact)

    return band


def _membership(consts: frozenset[FactValue]) -> Abstractor:
    def member(v: FactValue) -> FactValue:
        return v if v in consts else _OTHER

    return member


def _required_false(c: Cond, cp: CompiledPack, negate: bool = False) -> tuple[bool, set[str]]:
    """Whether ``c`` (or its negation) always holds, and the keyword groups and patterns it requires
    to be false where it does not: a fact must then hold them even when false (see
    :meth:`CompiledPack.feature_reader`). A part that always holds requires nothing."""
    if isinstance(c, Keywords | Pattern):
        feat = cp.keyword_of[c.words] if isinstance(c, Keywords) else cp.pattern_index[c.regex]
        return False, {feat} if negate else set()
    if isinstance(c, Test):
        return False, set()
    if isinstance(c, Not):
        return _required_false(c.item, cp, not negate)
    if not c.items:
        return not negate, set()
    parts = [_required_false(x, cp, negate) for x in c.items]
    if isinstance(c, All) != negate:  # a conjunction: the parts that may fail
        kept = [needs for always, needs in parts if not always]
        return (True, set()) if not kept else (False, set[str]().union(*kept))
    if any(always for always, _needs in parts):
        return True, set()
    return False, set[str]().union(*[needs for _always, needs in parts])


# ---------------------------------------------------------------------------------------------------
# The plain interpretation: the same conditions evaluated directly in Python.


def evaluate(c: Cond, fact: Fact, cp: CompiledPack) -> bool:
    if isinstance(c, Test):
        v = fact[fact_name(c.field)]
        op = c.op
        if op == "eq":
            return bool(v == c.value)
        if op == "ne":
            return bool(v != c.value)
        if op == "in":
            return v in c.value
        if op == "not_in":
            return v not in c.value
        if op == "lt":
            return bool(v < c.value)
        if op == "lte":
            return bool(v <= c.value)
        if op == "gt":
            return bool(v > c.value)
        return bool(v >= c.value)
    if isinstance(c, Keywords):  # a fact may leave out a group that is false (engine.Decider._fact)
        return bool(fact.get(cp.keyword_of[c.words]))
    if isinstance(c, Pattern):
        return bool(fact.get(cp.pattern_index[c.regex]))
    if isinstance(c, Not):
        return not evaluate(c.item, fact, cp)
    if isinstance(c, All):
        return all(evaluate(x, fact, cp) for x in c.items)
    if isinstance(c, AnyOf):
        return any(evaluate(x, fact, cp) for x in c.items)
    raise TypeError(type(c).__name__)
