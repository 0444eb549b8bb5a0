"""The engine seam: what a stage's rules are matched with.

A :class:`Matcher` answers one question, for one decision at a time: which of a stage's rules hold on
a fact. Two implementations stand behind it and must agree on every complaint (the differential tests
check it):

* :class:`PythonMatcher`, the plain interpretation of the compiled conditions (:func:`fenliu.compiling.compiler.evaluate`);
* ``DurableMatcher`` (:mod:`fenliu.engine._durable`), the durable_rules engine: its sessions and its
  failures live there, in the one module that imports it; its expression dialect and its limits beside
  it, in :mod:`fenliu.engine.durable_lowering`, which does not import the engine.

:func:`matcher_for` builds one by name (``Decider(backend=...)``). A matcher that fails on a valid
fact raises :class:`~fenliu.domain.errors.MatcherFailure`; the decider then answers from the plain
interpretation and rebuilds the matcher.

Each :class:`Backend` also says, without being built, what of a compiled pack it cannot run (its
limits: :attr:`Backend.check`). :func:`problems` asks every backend, and pack loading refuses a pack
any of them refuses: the same pack is served by one backend, falls back to another, and is linted and
tested on the interpreter, so each must run it. A second matcher is one module that implements the
protocol (and, if it has limits, a check that does not need the engine loaded), plus one entry in
:data:`BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Final, Protocol

from fenliu.compiling.compiler import CompiledPack, Fact, StagePlan, evaluate
from fenliu.domain.errors import Problem
from fenliu.engine import durable_lowering
from fenliu.packs.types import Rule

#: For one decision: a stage's plan and fact → the stage's rules that hold.
MatchFn = Callable[[StagePlan, Fact], list[Rule]]


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

    def matches(self, plan: StagePlan, fact: Fact) -> list[Rule]:
        return [r for r in plan.rules if evaluate(r.when, fact, self.cp)]

    @contextmanager
    def deciding(self) -> Iterator[MatchFn]:
        yield self.matches

    def close(self) -> None:
        pass


def _durable(cp: CompiledPack) -> Matcher:
    from fenliu.engine._durable import DurableMatcher

    return DurableMatcher(cp)


def _no_limits(cp: CompiledPack) -> list[Problem]:
    return []


@dataclass(frozen=True, slots=True)
class Backend:
    """A matcher by name: how to build it, and what of a compiled pack it cannot run (each a problem
    naming file, line and rule), told without building it."""

    make: Callable[[CompiledPack], Matcher]
    check: Callable[[CompiledPack], list[Problem]] = _no_limits


#: Matchers by the name ``Decider(backend=...)`` takes.
BACKENDS: Final[dict[str, Backend]] = {
    "python": Backend(PythonMatcher),
    "durable": Backend(_durable, durable_lowering.check),
}


def matcher_for(backend: str, cp: CompiledPack) -> Matcher:
    try:
        make = BACKENDS[backend].make
    except KeyError:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}") from None
    return make(cp)


def problems(cp: CompiledPack) -> list[Problem]:
    """What of ``cp`` some backend cannot run: pack loading refuses the pack (see the module docstring)."""
    return [p for backend in BACKENDS.values() for p in backend.check(cp)]
