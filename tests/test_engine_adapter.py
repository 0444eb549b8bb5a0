"""The adapter's assumptions about durable_rules, checked against the real engine.

See shared notes: the engine segfaults on delete_state after a fact that matched nothing, hashes
sessions and facts to 32 bits, is not thread-safe, rejects exponent notation, and fires a rule once
per satisfied $or branch. Tests that could crash the interpreter run in a subprocess.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from fenliu import Decider, Pack, complaint_from_dict
from fenliu.engine import _durable


def run_py(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


def test_adapter_survives_facts_that_match_no_rule() -> None:
    # Without the catch-all rule, deleting such a session crashes the process (state.c:828-936).
    proc = run_py("""
        from fenliu.engine import _durable
        rs = _durable.Ruleset({"r": {"$and": [{"_step": "s"}, {"cat": "labor"}]}})
        for i in range(20000):
            with rs.session() as s:
                assert s.fire({"_step": "s", "cat": "other%d" % i}) == []
        rs.close()  # deletes the ruleset's long-lived state, then the ruleset
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_adapter_sessions_do_not_leak_between_requests() -> None:
    rs = _durable.Ruleset({"r": {"$and": [{"_step": "s"}, {"$gte": {"n": 3}}]}})
    try:
        for _ in range(3000):  # identical content again and again: never "already observed"
            with rs.session() as s:
                assert s.fire({"_step": "s", "n": 5}) == ["r"]
            with rs.session() as s:
                assert s.fire({"_step": "s", "n": 1}) == []
    finally:
        rs.close()


def test_adapter_state_holds_no_facts_between_decisions() -> None:
    rs = _durable.Ruleset({"r": {"$and": [{"_step": "s"}, {"$gte": {"n": 3}}]}})
    try:
        with rs.session() as s:
            assert s.fire({"_step": "s", "n": 5}) == ["r"]
            assert s.fire({"_step": "s", "n": 7}) == ["r"]
            assert len(rs.facts()) == 2  # inside the decision, its facts are there
        assert rs.facts() == []
        with rs.session() as s:
            assert s.fire({"_step": "s", "n": 1}) == []
            with pytest.raises(ValueError):
                raise ValueError("a decision that fails half-way")
        assert rs.facts() == []
    finally:
        rs.close()


def test_adapter_starts_a_new_state_when_a_retraction_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    rs = _durable.Ruleset({"r": {"$and": [{"_step": "s"}, {"$gte": {"n": 3}}]}})
    real = _durable._engine.retract_fact
    try:
        monkeypatch.setattr(_durable._engine, "retract_fact", lambda handle, payload: (1, 0))
        with pytest.raises(_durable.EngineFailure, match="retract failed"), rs.session() as s:
            assert s.fire({"_step": "s", "n": 5}) == ["r"]
        monkeypatch.setattr(_durable._engine, "retract_fact", real)
        assert rs.facts() == []  # the state was deleted
        for _ in range(3):  # a new state: the same content is not "already observed"
            with rs.session() as s:
                assert s.fire({"_step": "s", "n": 5}) == ["r"]
        assert rs.facts() == []
    finally:
        rs.close()


def test_adapter_long_lived_state_stays_small() -> None:
    # One engine state for the ruleset's life, a decision's facts retracted: memory stays flat.
    proc = run_py("""
        import resource
        from fenliu.engine import _durable
        rs = _durable.Ruleset({"r%d" % i: {"$and": [{"_step": "s"}, {"$gte": {"n%d" % (i % 7): i}}]}
                               for i in range(60)})
        def rss_kb():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        def run(k):
            for i in range(k):
                with rs.session() as s:
                    s.fire({"_step": "s", "n%d" % (i % 7): i % 90, "x": i})
                    s.fire({"_step": "s", "n%d" % ((i + 1) % 7): i % 50, "y": i})
        run(20000)
        before = rss_kb()
        run(60000)
        print(rss_kb() - before, len(rs.facts()))
        rs.close()
    """)
    assert proc.returncode == 0, proc.stderr
    grown_kb, facts = map(int, proc.stdout.split())
    assert facts == 0
    assert grown_kb < 2048, grown_kb


def test_adapter_reports_or_rule_once() -> None:
    rs = _durable.Ruleset({"r": {"$and": [{"_step": "s"}, {"$or": [{"a": 1}, {"b": 1}, {"c": 1}]}]}})
    try:
        with rs.session() as s:
            assert s.fire({"_step": "s", "a": 1, "b": 1, "c": 1}) == ["r"]
    finally:
        rs.close()


@pytest.mark.parametrize(
    "value,fires",
    [(5e-324, False), (1e-05, False), (1e15, True), (99_999.99999999999, False), (100_000.0, True)],
)
def test_adapter_encodes_floats_the_engine_can_parse(value: float, fires: bool) -> None:
    rs = _durable.Ruleset(
        {
            "ge": {"$and": [{"_step": "s"}, {"$gte": {"n": 100_000}}]},
            "pos": {"$and": [{"_step": "s"}, {"$gt": {"n": 0}}]},
        }
    )
    try:
        with rs.session() as s:
            fired = s.fire({"_step": "s", "n": value})
        assert "pos" in fired
        assert ("ge" in fired) == fires
    finally:
        rs.close()


def test_adapter_encode_is_json() -> None:
    import json

    doc: dict[str, Any] = {"a": [1, 2.5, 1e-7, True, None, '字"q'], "b": {"c": 1e20}}
    assert json.loads(_durable.encode(doc)) == doc


def test_adapter_check_expression_refuses_engine_traps() -> None:
    assert _durable.check_expression({"$and": [{"_step": "s"}, {"$mt": {"t": "a|b"}}]}) == [
        "operator $mt is not allowed"
    ]
    assert _durable.check_expression({"$nex": {"x": 1}}) == ["operator $nex is not allowed"]
    assert _durable.check_expression({"$ne": {"x": 1}}) == ["operator $ne is not allowed"]
    assert _durable.check_expression({"$and": [{"_step": "s"}, {"$gte": {"n": 3}}]}) == []


def test_adapter_many_rulesets_created_and_deleted(wushen: Pack) -> None:
    # What a reload does: a new ruleset under a fresh name, the old one deleted.
    c = complaint_from_dict({"id": "x", "text": "邻居家排水", "people_involved": 4})
    first = None
    for _ in range(60):
        d = Decider(wushen, memoize=False)
        o = d.outcome(c)
        first = first or o
        assert o == first and d.fallbacks == 0
        d.close()


def test_engine_is_safe_from_many_threads(wushen: Pack, python_decider: Decider) -> None:
    decider = Decider(wushen, memoize=False)
    texts = ["拖欠农民工工资", "邻居排水", "草场放牧", "学校收费", "离婚抚养", "煤矿粉尘", "无关的话"]
    complaints = [
        complaint_from_dict(
            {
                "id": f"c{i}",
                "text": texts[i % len(texts)],
                "people_involved": i % 40,
                "vulnerable": i % 3 == 0,
            }
        )
        for i in range(700)
    ]
    expected = [python_decider.outcome(c) for c in complaints]
    errors: list[str] = []

    def work(offset: int) -> None:
        for i in range(offset, len(complaints), 7):
            if decider.outcome(complaints[i]) != expected[i]:
                errors.append(complaints[i].id)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert decider.fallbacks == 0


def test_engine_failure_falls_back_to_interpreter(
    wushen: Pack, python_decider: Decider, monkeypatch: pytest.MonkeyPatch
) -> None:
    decider = Decider(wushen, memoize=False)
    c = complaint_from_dict({"id": "x", "text": "拖欠农民工工资", "people_involved": 12})
    real = _durable._engine.assert_fact
    calls = {"n": 0}

    def flaky(handle: int, payload: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("Could not assert fact, error code: 307")
        return real(handle, payload)

    monkeypatch.setattr(_durable._engine, "assert_fact", flaky)
    assert decider.outcome(c) == python_decider.outcome(c)
    assert decider.fallbacks == 1
    monkeypatch.setattr(_durable._engine, "assert_fact", real)
    assert decider.outcome(c) == python_decider.outcome(c)  # the rebuilt engine serves again
    assert decider.fallbacks == 1


def test_exactly_one_module_imports_durable_rules() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "service" / "fenliu"
    importers = sorted(
        p.name
        for p in root.rglob("*.py")
        if "durable_rules_engine" in p.read_text("utf-8")
        and "import" in p.read_text("utf-8")
        and any(
            line.startswith(("import durable", "from durable")) for line in p.read_text("utf-8").splitlines()
        )
    )
    assert importers == ["_durable.py"]


def test_closed_decider_answers_from_interpreter_without_rebuilding(
    wushen: Pack, python_decider: Decider
) -> None:
    # A decision that raced a reload finds its pack's engine closed: it must still be answered, by the
    # same pack, and must not resurrect an engine nobody will close.
    decider = Decider(wushen, memoize=False)
    c = complaint_from_dict({"id": "x", "text": "拖欠农民工工资", "people_involved": 12})
    decider.close()
    assert decider.outcome(c) == python_decider.outcome(c)
    assert decider.matcher.name == "python"  # no engine resurrected


def test_keyword_group_required_absent_reaches_the_engine(tmp_path: Path) -> None:
    """Facts leave out keyword groups that are false unless a rule of the stage needs them false: a
    rule requiring a word to be absent still sees the group, on the engine as in the interpreter."""
    from fenliu import load_pack

    dest = tmp_path / "p"
    shutil.copytree(Path(__file__).resolve().parent / "packs" / "base", dest)
    (dest / "base_test.yaml").unlink()
    (dest / "supplement.yaml").write_text(
        textwrap.dedent(
            """\
            rules:
              - id: classify.drain_not_homestead
                stage: classify
                priority: 900
                when:
                  keywords: [排水]
                  not: {keywords: [宅基地]}
                then: {category: homestead}
            """
        ),
        "utf-8",
    )
    pack = load_pack(dest)
    engine, interp = Decider(pack, memoize=False), Decider(pack, backend="python", memoize=False)
    try:
        plan = next(p for p in engine.compiled.stages if p.name == "classify")
        assert len(plan.negated) == 1
        for text, fires in (("院子排水不畅", True), ("宅基地上排水不畅", False), ("宅基地", False)):
            c = complaint_from_dict({"id": "x", "text": text})
            rules = [t.rule for t in engine.outcome(c).trace]
            assert ("classify.drain_not_homestead" in rules) is fires, text
            assert engine.outcome(c) == interp.outcome(c)
        assert engine.fallbacks == 0
    finally:
        engine.close()


def test_compiler_imports_nothing_of_the_engine() -> None:
    """The compiler emits neutral conditions only: the engine's dialect and limits live beside its adapter."""
    import ast

    root = Path(__file__).resolve().parents[1] / "service" / "fenliu" / "compiling"
    imported: set[str] = set()
    for p in root.glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
    assert not [m for m in imported if m.startswith(("fenliu.engine", "durable"))]


def test_lowering_needs_false_exactly_the_features_the_compiler_puts_in_facts(wushen: Pack) -> None:
    """A fact holds a false keyword group or pattern only where a rule needs it false: the compiler
    works that out from the neutral conditions, and the lowered expressions must need no other."""
    import dataclasses

    from fenliu.compiling.compiler import compile_pack
    from fenliu.engine.durable_lowering import required_false, stage_expressions
    from fenliu.packs import types as P

    neg = P.Not(P.Keywords(("排水",), 3))
    odd = [
        P.All((P.Keywords(("宅基地",), 3), neg)),
        P.AnyOf((neg, P.All(()))),  # always true: needs nothing
        P.Not(P.AnyOf((P.Pattern("水+", 3), P.Keywords(("草场",), 3)))),
        P.Not(P.All(())),
    ]
    first = wushen.rules[0]
    extra = tuple(
        dataclasses.replace(first, id=f"{first.id}.x{i}", when=c, order=len(wushen.rules) + i)
        for i, c in enumerate(odd)
    )
    for pack in (wushen, dataclasses.replace(wushen, rules=(*wushen.rules, *extra))):
        cp = compile_pack(pack)
        for plan in cp.stages:
            exprs = stage_expressions(plan, cp).values()
            lowered = {f for f in plan.features if any(required_false(e, f) for e in exprs)}
            assert plan.negated == lowered, plan.name


def test_engine_limits_reach_pack_loading_through_the_backends() -> None:
    from fenliu.engine import durable_lowering
    from fenliu.engine.matchers import BACKENDS

    assert BACKENDS["durable"].check is durable_lowering.check
    assert BACKENDS["python"].check(None) == []  # type: ignore[arg-type]
