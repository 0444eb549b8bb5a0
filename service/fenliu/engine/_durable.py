"""The one module that talks to durable_rules.

What the engine needs of a compiled pack that does not need the engine itself (the lowering of the
neutral conditions to its expression dialect, its limits, checked at pack load) is beside it, in
:mod:`fenliu.engine.durable_lowering`; this module holds the rulesets, sessions and failures.

It uses the engine's C layer (``durable_rules_engine``) directly and never its Python ``Host``: the
Host starts a background dispatcher that runs actions on another thread (incomplete traces), crashes
when a ruleset is removed, and cannot replace a ruleset (see docs/engine.md for the measured traps).

How the traps are kept away:

* **Thread safety.** The engine is not thread-safe and never releases the GIL. Every call runs under one
  process-wide lock; a request's whole session (all its stages) holds it. Scale with processes.
* **Identity.** Sessions and facts are hashed to 32 bits inside the engine. A ruleset has one engine
  state, under one fixed session id, for its whole life; a decision's facts carry distinct fixed ids
  and are retracted before the lock is released, so the state holds only the facts of the decision
  being made and two complaints can never share or collide in state.
* **Cost of a state.** Creating and deleting an engine state costs time proportional to the ruleset
  (measured: about 190 µs at 500 rules, 28 µs at 60), which a state per decision paid on every engine
  decision; retracting the few facts of a decision costs a fraction of that. If a retraction fails,
  the state is deleted and the next decision starts a new one.
* **delete_state segfault.** Deleting a session in which no action ever ran crashes the process. Every
  ruleset gets a catch-all rule that matches every fact, so an action always runs; a state is deleted
  only once a fact has been asserted into it.
* **Actions.** Rules have no Python actions: the adapter pulls the names of the rules that matched from
  the C layer and completes them. Nothing runs on another thread; nothing is swallowed. A rule whose
  expression holds ``$or`` fires once per satisfied branch; the adapter reports each rule once.
* **Reload.** Rulesets get unique names; the old one is deleted with ``delete_ruleset`` after the new
  one is live. Packs never use the engine's regex operator, which is what leaks on delete.
* **Spurious "already observed".** The engine can report a distinct fact as already seen (32-bit content
  hash, issue #376). The adapter retries such a fact once with a nonce field; if the engine still fails,
  it raises :class:`EngineFailure` and the caller answers from the plain interpreter.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import durable_rules_engine as _engine

from fenliu.domain.errors import MatcherFailure
from fenliu.engine.durable_lowering import STEP_FIELD, Expression, stage_expressions
from fenliu.engine.durable_lowering import check_expression as check_expression

if TYPE_CHECKING:
    from fenliu.compiling.compiler import CompiledPack, Fact, FactValue, StagePlan
    from fenliu.engine.matchers import MatchFn
    from fenliu.packs.types import Rule

CATCH_ALL: Final = "__catch_all__"
KIND_FIELD: Final = "_kind"
SESSION_ID: Final = "fenliu"

#: One lock for the whole process: the engine's C state is shared by every ruleset.
ENGINE_LOCK: Final = threading.RLock()


def encode(value: object) -> str:
    """JSON the engine parses faithfully.

    The engine's number parser rejects exponents (``1e-05``, ``1e+16``, ``1E5``: error 204), which
    Python's ``json`` writes for small and large floats. Floats are written in positional notation:
    the shortest round-trip form where it has no exponent, otherwise the exact decimal expansion.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("the engine cannot take a non-finite number")
        text = repr(value)
        return format(Decimal(value), "f") if ("e" in text or "E" in text) else text
    if isinstance(value, Mapping):
        return (
            "{"
            + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{encode(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__}")


# One compact JSON encoder for every fact, made once (``json.dumps`` with arguments builds a new one
# per call): text as it is (not \u-escaped), no spaces.
_Encoder = Callable[["Mapping[str, FactValue]", int], tuple[str, ...]]
_c_make_encoder: Callable[..., _Encoder] | None = getattr(json.encoder, "c_make_encoder", None)
_FACT_ENCODER: Final[_Encoder | None] = (
    _c_make_encoder(None, None, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    if _c_make_encoder is not None
    else None
)


def _dumps_fact(body: Mapping[str, FactValue]) -> str:
    """A flat fact as JSON, unless a float would be written with an exponent (then :func:`encode`)."""
    for v in body.values():
        # repr() switches to exponent notation below 1e-4 and from 1e16 on.
        if type(v) is float and v != 0.0 and not (1e-4 <= abs(v) < 1e16):
            return encode(body)
    if _FACT_ENCODER is not None:
        return "".join(_FACT_ENCODER(body, 0))
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _rule_name(message: str) -> str:
    """The rule name of an action message ``{"NAME": {...}}`` (names are plain ASCII, no quotes)."""
    if message.startswith('{"'):
        end = message.find('"', 2)
        if end > 2:
            return message[2:end]
    parsed = json.loads(message)
    return str(next(iter(parsed)))


class EngineFailure(MatcherFailure):
    """The engine failed on a fact. Carries no fact data."""


class Ruleset:
    """One compiled ruleset living in the engine. ``rules`` maps rule names to match expressions."""

    def __init__(self, rules: Mapping[str, Expression]) -> None:
        definition: dict[str, object] = {}
        for name, expr in rules.items():
            if name == CATCH_ALL:
                raise ValueError("reserved rule name")
            definition[name] = {"all": [{"m": expr}]}
        definition[CATCH_ALL] = {"all": [{"m": {KIND_FIELD: "f"}}]}
        self.name = f"fenliu_{uuid.uuid4().hex}"  # unique in the process's one engine, with no counter
        payload = encode(definition)
        # Whether the engine holds a state for SESSION_ID (a fact was asserted since it was deleted).
        self._state = False
        with ENGINE_LOCK:
            self._handle: int | None = _engine.create_ruleset(self.name, payload)

    def close(self) -> None:
        with ENGINE_LOCK:
            if self._handle is not None:
                self._delete_state()
                _engine.delete_ruleset(self._handle)
                self._handle = None

    def _delete_state(self) -> None:
        if self._state and self._handle is not None:
            self._state = False
            # Safe: the catch-all rule guarantees an action ran in this state.
            _engine.delete_state(self._handle, SESSION_ID)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One decision's session. Holds the engine lock until the decision's facts are retracted."""
        with ENGINE_LOCK:
            if self._handle is None:
                raise EngineFailure("ruleset is closed")
            s = Session(self._handle)
            try:
                yield s
            finally:
                self._state = self._state or s.asserted
                if not s.retract_all():
                    try:
                        self._delete_state()
                    except Exception as e:
                        raise EngineFailure(f"delete_state failed: {type(e).__name__}") from None
                    raise EngineFailure("retract failed; the state was deleted")

    def facts(self) -> list[Fact]:
        """The facts the engine state holds now: none between decisions."""
        with ENGINE_LOCK:
            if self._handle is None:
                return []
            try:
                text = _engine.get_facts(self._handle, SESSION_ID)
            except Exception:  # error 309: there is no state
                return []
            facts = json.loads(text)
            return [f for f in facts if isinstance(f, dict)]


class Session:
    """One decision's facts in the ruleset's engine state."""

    def __init__(self, handle: int) -> None:
        self._handle = handle
        self._facts = 0
        self.asserted = False  # an assert reached the engine (it may have stored the fact)
        self._stored: list[str] = []  # the payloads the engine accepted, to retract
        self._failed = False  # an assert failed: what the state holds is not known

    def fire(self, fact: Fact) -> list[str]:
        """Assert one fact and return the names of the rules it matched, in engine order."""
        self._facts += 1
        body = dict(fact)
        body["sid"] = SESSION_ID
        body["id"] = f"f{self._facts}"
        body[KIND_FIELD] = "f"
        for attempt in range(2):
            try:
                payload = _dumps_fact(body)
                self.asserted = True
                result = _engine.assert_fact(self._handle, payload)
            except Exception as e:  # engine errors carry codes, never our data
                self._failed = True
                raise EngineFailure(f"assert failed: {type(e).__name__}") from None
            code, state_handle = result[0], result[1]
            if code == 2 and attempt == 0:  # spuriously "already observed": vary the content once
                body["_nonce"] = self._facts
                continue
            if code != 0:
                self._failed = True
                raise EngineFailure(f"assert returned code {code}")
            self._stored.append(payload)
            return self._drain(state_handle)
        self._failed = True
        raise EngineFailure("fact rejected twice")

    def _drain(self, state_handle: int) -> list[str]:
        fired: list[str] = []
        handle = self._handle
        complete = _engine.complete_and_start_action
        try:
            first = _engine.start_action_for_state(handle, state_handle)
            message = first[1] if first else None
            while message:
                end = message.find('"', 2) if message.startswith('{"') else -1
                name = message[2:end] if end > 2 else _rule_name(message)
                # An expression with $or fires once per satisfied branch: keep the first.
                if name != CATCH_ALL and name not in fired:
                    fired.append(name)
                message = complete(handle, state_handle)
        except Exception as e:
            self._failed = True
            raise EngineFailure(f"action loop failed: {type(e).__name__}") from None
        return fired

    def retract_all(self) -> bool:
        """Retract this decision's facts, newest first. False if the engine refused one."""
        ok = not self._failed
        while self._stored:
            payload = self._stored.pop()
            try:
                result = _engine.retract_fact(self._handle, payload)
            except Exception:
                ok = False
                continue
            if result[0] != 0:
                ok = False
        return ok


class DurableMatcher:
    """The durable_rules engine behind :class:`fenliu.engine.matchers.Matcher`: one ruleset (and one engine
    state) for the whole pack; each decision asserts its facts in a session of its own, entered only
    when a stage is asked of it, and retracts them when done."""

    name = "durable"

    def __init__(self, cp: CompiledPack) -> None:
        self.cp = cp
        rules: dict[str, Expression] = {}
        self._rule: dict[str, Rule] = {}
        for plan in cp.stages:
            for (name, expr), rule in zip(stage_expressions(plan, cp).items(), plan.rules, strict=True):
                qualified = f"s{plan.index}_{name}"
                rules[qualified] = expr
                self._rule[qualified] = rule
        self.ruleset = Ruleset(rules)

    def session(self) -> AbstractContextManager[Session]:
        return self.ruleset.session()

    def matches_in(self, session: Session, plan: StagePlan, fact: Fact) -> list[Rule]:
        return [self._rule[n] for n in session.fire({STEP_FIELD: plan.name, **fact})]

    @contextmanager
    def deciding(self) -> Iterator[MatchFn]:
        with ExitStack() as stack:
            session: Session | None = None

            def match(plan: StagePlan, fact: Fact) -> list[Rule]:
                nonlocal session
                if session is None:  # the engine is entered only for a class it has not seen
                    session = stack.enter_context(self.ruleset.session())
                return self.matches_in(session, plan, fact)

            yield match

    def close(self) -> None:
        self.ruleset.close()
