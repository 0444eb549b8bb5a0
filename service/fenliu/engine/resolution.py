"""How the rules of one stage that set the same decision field are reconciled: one place, read by the
engine (which applies it) and by lint (which reasons about which rule wins).

Matched rules come in resolution order (priority, higher first, then position in the pack). For a
field that resolves ``"first"`` the first rule in that order that sets it wins. For a field that
resolves ``"highest"`` the highest value in the field's declared order (:data:`ORDERS`) wins, whatever
the priorities; equal values keep the first. Which field resolves how is declared in
:data:`fenliu.domain.fields.DECISION_TABLE`.

It knows nothing of rules, stages or engines: only values and the declared orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from fenliu.domain import fields as F
from fenliu.domain import model

#: Per field that resolves "highest", its values from lowest to highest.
ORDERS: Final[Mapping[str, tuple[str, ...]]] = {"color": model.COLORS}

_RANKS: Final[dict[str, dict[object, int]]] = {
    name: {v: i for i, v in enumerate(order)} for name, order in ORDERS.items()
}

if {f.name for f in F.DECISION_TABLE if f.resolve == "highest"} != set(ORDERS) or not all(
    f.resolve in ("first", "highest") for f in F.DECISION_TABLE
):  # pragma: no cover - a table edit that forgot its order
    raise AssertionError("every decision field that resolves 'highest' needs an order in ORDERS")


def by_highest(slot: str) -> bool:
    """Whether ``slot`` resolves by the highest value rather than by the first rule."""
    return slot in _RANKS


def rank(slot: str, value: object) -> int:
    """``value``'s place in ``slot``'s declared order (-1 when not in it, e.g. a computed value)."""
    return _RANKS[slot].get(value, -1)


def replaces(slot: str, new: object, held: object) -> bool:
    """Whether a value met later in resolution order replaces the one held so far."""
    ranks = _RANKS.get(slot)
    return ranks is not None and ranks[new] > ranks[held]
