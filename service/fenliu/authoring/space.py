"""The value space the lint reasons in: what a field can hold (intervals of numbers, finite sets,
texts), their meet and complement, and a stage's :class:`Space` of boxes (conjunctions of field
constraints) that conditions are turned into. Exact for the constructs packs use; a question whose
boxes pass :data:`MAX_BOXES` raises :class:`TooComplex` and is skipped, never guessed.

It knows nothing of findings: :mod:`fenliu.authoring.lint` asks it questions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from fenliu.compiling.compiler import normalize_text
from fenliu.domain import fields as F
from fenliu.domain import model
from fenliu.i18n import _
from fenliu.packs.types import All, Cond, Keywords, Not, Pack, Pattern, Test

#: Largest disjunctive normal form the lint builds for one question; past it the question is skipped
#: (no finding), so the lint stays fast and never claims what it has not shown.
MAX_BOXES: Final = 4096

# ---------------------------------------------------------------------------------------------------
# Value sets

INF: Final = math.inf

Interval = tuple[float, bool, float, bool]  # low, low included, high, high included


@dataclass(frozen=True, slots=True)
class Num:
    """A set of numbers: sorted disjoint intervals. ``integer``: only whole numbers count."""

    ivs: tuple[Interval, ...]
    integer: bool

    def empty(self) -> bool:
        return not self.ivs


#: One value of a finite domain: an enum value or a code (text), true or false.
Atom = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Fin:
    """A subset of a finite domain (enums, codes, booleans, keyword presence)."""

    values: frozenset[Atom]

    def empty(self) -> bool:
        return not self.values


@dataclass(frozen=True, slots=True)
class Txt:
    """Free text: ``pos`` → one of ``values``; not ``pos`` → anything but ``values``."""

    pos: bool
    values: frozenset[str]

    def empty(self) -> bool:
        return self.pos and not self.values


Con = Num | Fin | Txt
Box = dict[str, Con]

BOOL: Final = Fin(frozenset({True, False}))
ANY_TEXT: Final = Txt(False, frozenset())


def _norm_int(ivs: Iterable[Interval]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    for lo, li, hi, hi_in in ivs:
        a = lo if lo == -INF else (math.ceil(lo) if (li or lo != math.floor(lo)) else lo + 1)
        b = hi if hi == INF else (math.floor(hi) if (hi_in or hi != math.ceil(hi)) else hi - 1)
        if a <= b:
            out.append((a, True, b, True))
    return _merge(out, True)


def _merge(ivs: Iterable[Interval], integer: bool) -> tuple[Interval, ...]:
    items = sorted(ivs, key=lambda iv: (iv[0], not iv[1]))
    out: list[Interval] = []
    for iv in items:
        if out:
            lo, li, hi, hi_in = out[-1]
            touch = iv[0] < hi or (iv[0] == hi and (hi_in or iv[1])) or (integer and iv[0] == hi + 1)
            if touch:
                if iv[2] > hi or (iv[2] == hi and iv[3]):
                    out[-1] = (lo, li, iv[2], iv[3] or (iv[2] == hi and hi_in))
                continue
        out.append(iv)
    return tuple(out)


def num(ivs: Iterable[Interval], integer: bool) -> Num:
    ivs = list(ivs)
    return Num(_norm_int(ivs) if integer else _merge([iv for iv in ivs if _nonempty(iv)], False), integer)


def _nonempty(iv: Interval) -> bool:
    lo, li, hi, hi_in = iv
    return lo < hi or (lo == hi and li and hi_in)


def _num_meet(a: Num, b: Num) -> Num:
    out: list[Interval] = []
    for x in a.ivs:
        for y in b.ivs:
            if x[0] > y[0] or (x[0] == y[0] and not x[1]):
                lo, li = x[0], x[1]
            else:
                lo, li = y[0], y[1]
            if x[2] < y[2] or (x[2] == y[2] and not x[3]):
                hi, hi_in = x[2], x[3]
            else:
                hi, hi_in = y[2], y[3]
            iv = (lo, li, hi, hi_in)
            if _nonempty(iv):
                out.append(iv)
    return num(out, a.integer or b.integer)


def _num_complement(a: Num) -> Num:
    out: list[Interval] = []
    lo, li = -INF, False
    for x in a.ivs:
        iv = (lo, li, x[0], not x[1])
        if _nonempty(iv) or (lo == -INF and x[0] > -INF):
            out.append(iv)
        lo, li = x[2], not x[3]
    if lo < INF:
        out.append((lo, li, INF, False))
    return num(out, a.integer)


def meet(a: Con, b: Con) -> Con:
    if isinstance(a, Num) and isinstance(b, Num):
        return _num_meet(a, b)
    if isinstance(a, Fin) and isinstance(b, Fin):
        return Fin(a.values & b.values)
    if isinstance(a, Txt) and isinstance(b, Txt):
        if a.pos and b.pos:
            return Txt(True, a.values & b.values)
        if a.pos:
            return Txt(True, a.values - b.values)
        if b.pos:
            return Txt(True, b.values - a.values)
        return Txt(False, a.values | b.values)
    if isinstance(a, Fin) and isinstance(b, Txt):
        return Fin(frozenset(v for v in a.values if (v in b.values) == b.pos))
    if isinstance(a, Txt) and isinstance(b, Fin):
        return meet(b, a)
    raise TypeError(f"cannot meet {type(a).__name__} and {type(b).__name__}")


def complement(c: Con, domain: Con) -> Con:
    if isinstance(c, Num):
        return meet(domain, _num_complement(c))
    if isinstance(c, Txt):
        return meet(domain, Txt(not c.pos, c.values))
    assert isinstance(domain, Fin)
    return Fin(domain.values - c.values)


def _describe(c: Con) -> str:
    if isinstance(c, Num):
        parts = []
        for lo, li, hi, hi_in in c.ivs:
            if lo == hi:
                parts.append(_fmt(lo))
            elif hi == INF:
                parts.append(f"{'≥' if li else '>'} {_fmt(lo)}")
            elif lo == -INF:
                parts.append(f"{'≤' if hi_in else '<'} {_fmt(hi)}")
            elif c.integer:
                parts.append(f"{_fmt(lo)}–{_fmt(hi)}")
            else:
                parts.append(f"{'[' if li else '('}{_fmt(lo)}, {_fmt(hi)}{']' if hi_in else ')'}")
        return _(" or ").join(parts) or _("nothing")
    if isinstance(c, Fin):
        return ", ".join(sorted(_fmt(v) for v in c.values)) or _("nothing")
    values = ", ".join(sorted(repr(v) for v in c.values))
    return (_("one of {values}") if c.pos else _("anything but {values}")).format(values=values)


def _fmt(v: Atom) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if v == "":
        return '""'
    return str(v)


# ---------------------------------------------------------------------------------------------------
# Variables, their domains, and conditions in disjunctive normal form


class TooComplex(Exception):
    """A question's normal form grew past :data:`MAX_BOXES`; the lint says nothing about it."""


def _fvar(name: str) -> str:
    return "f:" + name


_COMPLAINT_DOMAINS: Final[dict[str, Con]] = {
    "people_involved": num([(1, True, model.MAX_COUNT, True)], True),
    "repeat_visits": num([(0, True, model.MAX_COUNT, True)], True),
    "amount_yuan": num([(0, True, model.MAX_AMOUNT, True)], False),
}


def _domain_of_type(ftype: F.FieldType, pack: Pack) -> Con:
    if ftype.kind == "bool":
        return BOOL
    if ftype.kind == "enum":
        return Fin(frozenset(ftype.values))
    if ftype.kind == "code":
        rows = pack.tables[ftype.table].rows if ftype.table in pack.tables else {}
        return Fin(frozenset(rows) | {""}) if rows else ANY_TEXT
    if ftype.numeric:
        return num([(-INF, False, INF, False)], ftype.kind == "int")
    return ANY_TEXT


class Space:
    """What each variable can be when one stage runs."""

    def __init__(self, pack: Pack, decision: dict[str, Con], words: Iterable[str]) -> None:
        self.pack = pack
        self.decision = decision
        self.words = tuple(words)

    def domain(self, var: str) -> Con:
        if not var.startswith("f:"):
            return BOOL
        name = var[2:]
        if name in self.decision:
            return self.decision[name]
        if name in _COMPLAINT_DOMAINS:
            return _COMPLAINT_DOMAINS[name]
        if name in F.COMPLAINT_FIELDS:
            return _domain_of_type(F.COMPLAINT_FIELDS[name], self.pack)
        return BOOL

    def sat(self, box: Box) -> bool:
        present = [v[3:] for v, c in box.items() if v.startswith("kw:") and c == Fin(frozenset({True}))]
        if not present:
            return True
        absent = [v[3:] for v, c in box.items() if v.startswith("kw:") and c == Fin(frozenset({False}))]
        return not any(a in p for p in present for a in absent)

    # -- leaves ------------------------------------------------------------------------------------
    def test(self, t: Test) -> tuple[str, Con]:
        """The variable a field test constrains, and the set it allows."""
        if (
            "." in t.field
            and t.field.split(".", 1)[0] in self.pack.tables
            and t.field not in F.COMPLAINT_FIELDS
        ):
            return self._column_test(t)
        var = _fvar(t.field)
        ftype = F.DECISION_FIELDS.get(t.field) or F.COMPLAINT_FIELDS.get(t.field)
        if ftype is not None and ftype.kind in ("duration", "codes"):
            return _opaque(t), Fin(frozenset({True}))
        dom = self.domain(var)
        if isinstance(dom, Num):
            return var, meet(dom, _num_allowed(t, dom.integer))
        if isinstance(dom, Fin):
            return var, Fin(frozenset(v for v in dom.values if _holds(t.op, v, t.value)))
        vals = frozenset(t.value) if t.op in ("in", "not_in") else frozenset({t.value})
        if t.op in ("eq", "in"):
            return var, meet(dom, Txt(True, vals))
        if t.op in ("ne", "not_in"):
            return var, meet(dom, Txt(False, vals))
        return _opaque(t), Fin(frozenset({True}))

    def _column_test(self, t: Test) -> tuple[str, Con]:
        tname, _sep, col = t.field.partition(".")
        table = self.pack.tables[tname]
        key_dom = self.domain(_fvar(table.key))
        if not isinstance(key_dom, Fin):
            return _opaque(t), Fin(frozenset({True}))
        sample = next((r[col] for r in table.rows.values() if r.get(col) is not None), "")
        blank: Atom = False if isinstance(sample, bool) else 0 if isinstance(sample, int | float) else ""
        allowed = set()
        for k in key_dom.values:
            row = table.rows.get(str(k), {})
            v = row.get(col)
            if _holds(t.op, blank if v is None else v, t.value):
                allowed.add(k)
        return _fvar(table.key), Fin(frozenset(allowed))

    # -- normal form -------------------------------------------------------------------------------
    def dnf(self, c: Cond, negate: bool = False) -> list[Box]:
        if isinstance(c, Test):
            var, con = self.test(c)
            if negate:
                con = complement(con, self.domain(var))
            return [] if con.empty() else [{var: con}]
        if isinstance(c, Keywords):
            words = sorted({normalize_text(w) for w in c.words})
            if negate:
                box: Box = {"kw:" + w: Fin(frozenset({False})) for w in words}
                return [box] if self.sat(box) else []
            return [{"kw:" + w: Fin(frozenset({True}))} for w in words]
        if isinstance(c, Pattern):
            return [{"re:" + c.regex: Fin(frozenset({not negate}))}]
        if isinstance(c, Not):
            return self.dnf(c.item, not negate)
        conj = isinstance(c, All) != negate
        if conj:
            out: list[Box] = [{}]
            for item in c.items:
                out = self.conj(out, self.dnf(item, negate))
                if not out:
                    break
            return out
        alts: list[Box] = []
        for item in c.items:
            alts += self.dnf(item, negate)
            if len(alts) > MAX_BOXES:
                raise TooComplex
        return alts

    def meet_box(self, a: Box, b: Box) -> Box | None:
        out = dict(a)
        for var, con in b.items():
            if var in out:
                m = meet(out[var], con)
                if m.empty():
                    return None
                out[var] = m
            else:
                out[var] = con
        return out if self.sat(out) else None

    def conj(self, xs: list[Box], ys: list[Box]) -> list[Box]:
        out: list[Box] = []
        seen: set[tuple[tuple[str, Con], ...]] = set()
        for x in xs:
            for y in ys:
                m = self.meet_box(x, y)
                if m is None:
                    continue
                key = tuple(sorted(m.items(), key=lambda kv: kv[0]))
                if key in seen:
                    continue
                seen.add(key)
                out.append(m)
                if len(out) > MAX_BOXES:
                    raise TooComplex
        return out


def _opaque(t: Test) -> str:
    return f"op:{t.field} {t.op} {t.value!r}"


def _holds(op: str, v: object, c: Any) -> bool:
    try:
        if op == "eq":
            return bool(v == c)
        if op == "ne":
            return bool(v != c)
        if op == "in":
            return v in c
        if op == "not_in":
            return v not in c
        if op == "lt":
            return bool(v < c)
        if op == "lte":
            return bool(v <= c)
        if op == "gt":
            return bool(v > c)
        if op == "gte":
            return bool(v >= c)
    except TypeError:
        return False
    return False


def _num_allowed(t: Test, integer: bool) -> Num:
    v = t.value
    if t.op == "eq":
        return num([(v, True, v, True)], integer)
    if t.op == "ne":
        return _num_complement(num([(v, True, v, True)], integer))
    if t.op == "in":
        return num([(x, True, x, True) for x in v], integer)
    if t.op == "not_in":
        return _num_complement(num([(x, True, x, True) for x in v], integer))
    return num(
        [
            {
                "lt": (-INF, False, v, False),
                "lte": (-INF, False, v, True),
                "gt": (v, False, INF, False),
                "gte": (v, True, INF, False),
            }[t.op]
        ],
        integer,
    )
