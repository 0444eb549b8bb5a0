"""The engine seam: what a stage's rules are matched with.

A :class:`Matcher` answers one question, for one decision at a time: which of a stage's rules hold on
a fact. Two implementations stand behind it and must agree on every complaint (the differential tests
check it):

* :class:`PythonMatcher`, the plain interpretation of the compiled conditions (:func:`fenliu.compiling.compiler.evaluate`);
* ``DurableMatcher`` (:mod:`fenliu.engine._durable`), the durable_rules engine: its expression dialect, its
  limits, its sessions and its failures live there, beside the one module that imports it.

:func:`matcher_for` builds one by name (``Decider(backend=...)``). A matcher that fails on a valid
fact raises :class:`~fenliu.domain.errors.MatcherFailure`; the decider then answers from the plain
interpretation and rebuilds the matcher. A second matcher is one module that implements the protocol,
plus one line in :data:`BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Final, Protocol

from fenliu.compiling.compiler import CompiledPack, StagePlan, evaluate
from fenliu.packs.types import Rule

#: For one decision: a stage's plan and fact → the stage's rules that hold.
MatchFn = Callable[[StagePlan, dict[str, Any]], list[Rule]]


class Matcher(Protocol):
    """Matches the rules of a compiled pack's stages against facts."""

    name: str

    def deciding(self) -> AbstractContextManager[MatchFn]:
        """The match function for one decision (its stages in order); resources it holds (an engine
        session) are released when the block ends. May raise :class:`~fenliu.domain.errors.MatcherFailure`."""
        ...

    def close(self) -> None:
        """Release what the matcher holds; it is not used afterwards."""
        ...


class PythonMatcher:
    """The plain interpretation: conditions evaluated directly on the fact."""

    name = "python"

    def __init__(self, cp: CompiledPack) -> None:
        self.cp = cp

    def matches(self, plan: StagePlan, fact: dict[str, Any]) -> list[Rule]:
        return [r for r in plan.rules if evaluate(r.when, fact, self.cp)]

    @contextmanager
    def deciding(self) -> Iterator[MatchFn]:
        yield self.matches

    def close(self) -> None:
        pass


def _durable(cp: CompiledPack) -> Matcher:
    from fenliu.engine._durable import DurableMatcher

    return DurableMatcher(cp)


#: Matchers by the name ``Decider(backend=...)`` takes.
BACKENDS: Final[dict[str, Callable[[CompiledPack], Matcher]]] = {
    "python": PythonMatcher,
    "durable": _durable,
}


def matcher_for(backend: str, cp: CompiledPack) -> Matcher:
    try:
        make = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}") from None
    return make(cp)
