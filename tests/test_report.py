"""``fenliu report``: the period, the table's shares and total, and one-line errors that create nothing.
The figures themselves are checked against an independent count in tests/test_month.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from fenliu.cli import commands as cli
from fenliu.cli.report import period, table
from fenliu.matter.events import OutcomeRow


def test_a_month_is_its_local_days_and_from_to_includes_the_last_day() -> None:
    start, end = period("2026-02", None, None, 8)
    assert (end - start) == 28 * 86_400
    assert period(None, "2026-02-01", "2026-02-28", 8) == (start, end)
    with pytest.raises(ValueError, match="YYYY-MM"):
        period("2026-13", None, None, 8)
    with pytest.raises(ValueError, match="before"):
        period(None, "2026-03-02", "2026-03-01", 8)


def test_the_table_has_shares_a_row_a_township_by_name_and_the_total() -> None:
    rows = [
        OutcomeRow(
            "150626100",
            received=10,
            resolved=8,
            resolved_grassroots=6,
            evaluated=4,
            satisfied=2,
            basically=1,
            dissatisfied=1,
        ),
        OutcomeRow("150626101", received=2, resolved=0, open_at_end=2, overdue_at_end=1),
    ]
    t = table(rows, {"150626100": "嘎鲁图镇"})
    head, *body = t
    assert head[0] == "township" and "grassroots share" in head
    row = dict(zip(head, body[1], strict=True))  # sorted by name: the code "150626101" sorts first
    assert (
        row["township"] == "嘎鲁图镇"
        and row["grassroots share"] == "75.0%"
        and row["satisfaction"] == "75.0%"
    )
    other = dict(zip(head, body[0], strict=True))
    assert other["grassroots share"] == "-" and other["overdue at the end"] == "1"
    total = dict(zip(head, body[-1], strict=True))
    assert total["township"] == "total" and total["received"] == "12" and total["resolved"] == "8"


def test_errors_are_one_line_and_a_mistyped_store_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no" / "matters.db"
    assert cli.main(["report", f"sqlite:///{missing}", "--month", "2026-11"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no matter store" in err and not missing.exists()
    assert cli.main(["report", f"sqlite:///{missing}", "--month", "2026-13"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert cli.main(["report", f"sqlite:///{missing}", "--from", "2026-11-01"]) == 2
    assert "--to" in capsys.readouterr().err
