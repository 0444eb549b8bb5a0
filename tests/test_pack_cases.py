"""The reference pack's own cases, run by pytest on the real engine, with full coverage."""

from __future__ import annotations

import pytest

from fenliu import Decider, Pack, run_cases
from fenliu.engine.matchers import BACKENDS


@pytest.mark.parametrize("memoize", [False, True], ids=["memo-off", "memo-on"])
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_reference_pack_cases_all_pass_with_full_coverage(wushen: Pack, backend: str, memoize: bool) -> None:
    decider = Decider(wushen, backend=backend, memoize=memoize)
    report = run_cases(wushen, decider)
    assert report.total >= 200
    assert [f.render() for f in report.failures] == []
    assert report.uncovered_rules == []
    assert report.uncovered_rows == []
    assert decider.fallbacks == 0


def test_reference_pack_covers_the_contract(wushen: Pack) -> None:
    cats = set(wushen.categories) - {"unclassified"}
    assert len(cats) == 22
    assert set(wushen.tables["exclusions"].rows) == {
        "judicial",
        "terminated",
        "duplicate",
        "misconduct_or_crime",
    }
    expected_categories = {c.expect.get("category") for c in wushen.cases}
    assert cats <= expected_categories
    intents = {c.complaint.get("intent") for c in wushen.cases}
    assert {
        "PETITION",
        "SUGGESTION",
        "MEDIATION",
        "LITIGATION",
        "CONSULTATION",
        "LEGAL_AID",
        "REPORT",
    } <= intents
    retriage = {(c.complaint.get("last_stage"), c.complaint.get("last_outcome")) for c in wushen.cases}
    for stage in ("CONSULT", "ASSESS", "MEDIATE", "ARBITRATE", "LITIGATE"):
        assert (stage, "FAILED") in retriage and (stage, "REFUSED") in retriage
