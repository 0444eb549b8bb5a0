"""A changed pack that keeps its revision is a warning: in ``fenliu verify PACK --against OLD``, in
``fenliu diff OLD NEW`` and in the reload, with the same words (in the reader's language) and the code
[revision-kept]. The warning never changes an exit status."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from fenliu import i18n
from fenliu.cli import commands as cli
from fenliu.serving.runtime import Triage

BASE = Path(__file__).resolve().parent / "packs" / "base"
WARNING = (
    "warning: the rules changed but the revision stayed 1: give the pack a new revision (pack.yaml), "
    "so that each decision names the rules that made it [revision-kept]"
)
WARNING_ZH = (
    "警告：规则改了，但版本号仍是 1：请在 pack.yaml 中给规则包一个新的版本号，"
    "这样每个决定都能指明是哪一版规则作出的 [revision-kept]"
)


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), "utf-8")


@pytest.fixture()
def packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """old: the base pack; new: one threshold changed, the revision kept."""
    monkeypatch.chdir(tmp_path)
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(BASE, old)
    shutil.copytree(BASE, new)
    _replace(new / "rules.yaml", "{people_involved: {gte: 30}}", "{people_involved: {gte: 31}}")
    return old, new


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    lines = [
        json.dumps(
            {"id": f"c{n}", "text": "邻居家的排水流到我家门口", "people_involved": n}, ensure_ascii=False
        )
        for n in (1, 5, 30, 40)
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err.splitlines()


def test_verify_against_warns_and_still_says_ok(
    packs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "verify", "new", "--against", "old")
    assert code == 0, out + err
    assert len(out) == 2 and out[0] == WARNING
    assert out[1].startswith("ok: the server would load base 1 (")
    assert err == []
    code, out, _err = _run(capsys, "--lang", "zh_CN", "verify", "new", "--against", "old")
    assert code == 0
    assert out[0] == WARNING_ZH and out[1].startswith("通过：服务会加载 base 1（")


@pytest.mark.parametrize("change", ["nothing", "revision", "name"])
def test_verify_against_is_quiet_unless_the_rules_changed_under_one_revision(
    packs: tuple[Path, Path], capsys: pytest.CaptureFixture[str], change: str
) -> None:
    old, new = packs
    if change == "nothing":
        shutil.rmtree(new)
        shutil.copytree(old, new)
    elif change == "revision":
        _replace(new / "pack.yaml", 'revision: "1"', 'revision: "2"')
    else:
        _replace(new / "pack.yaml", "name: base", "name: other")
    code, out, err = _run(capsys, "verify", "new", "--against", "old")
    assert code == 0 and len(out) == 1 and out[0].startswith("ok: "), out + err
    # and without --against, verify says what it always said
    assert _run(capsys, "verify", "new")[:2] == (0, out)


def test_verify_refused_keeps_its_status_and_warns_too(
    packs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, new = packs
    _replace(new / "base_test.yaml", "color: BLUE", "color: RED")
    code, out, _err = _run(capsys, "verify", "new", "--against", "old")
    assert code == 1
    assert out[-2] == WARNING
    assert out[-1].startswith("refused: the server would not load this pack (")
    assert any(": FAIL " in line for line in out)


def test_verify_against_a_pack_that_does_not_load(
    packs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "verify", "new", "--against", "olf")
    assert code == 2 and out == []
    assert err == ["fenliu: olf: no such folder (did you mean old?)"]
    old, _new = packs
    _replace(old / "pack.yaml", "name: base", "nme: base")
    code, out, err = _run(capsys, "verify", "new", "--against", "old")
    assert code == 2 and out == []
    assert err[0] == "fenliu verify: old: the pack does not load:"
    assert len(err) > 1 and all(line.startswith("  old/pack.yaml") for line in err[1:])


def test_diff_markdown_says_it_in_the_report(
    packs: tuple[Path, Path], corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["diff", "old", "new", "--corpus", str(corpus), "--no-progress", "--jobs", "1"]
    code, out, err = _run(capsys, *argv)
    assert code == 0
    assert out[:3] == [out[0], "", WARNING] and out[0].startswith("# fenliu diff: base 1 (")
    assert err == []  # the report on standard output says it, once
    # the warning does not change a status: --fail-on-change fails on the change (30 people), as before
    code, _out, _err = _run(capsys, *argv, "--fail-on-change")
    assert code == 3
    code, out, _err = _run(capsys, "--lang", "zh_CN", *argv)
    assert out[2] == WARNING_ZH


def test_diff_json_and_out_say_it_on_standard_error_too(
    packs: tuple[Path, Path], corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["diff", "old", "new", "--corpus", str(corpus), "--no-progress", "--jobs", "1"]
    code, out, err = _run(capsys, *argv, "--format", "json")
    assert code == 0
    assert err == [WARNING]
    report = json.loads("\n".join(out))
    assert report["warnings"] == [WARNING.removeprefix("warning: ")]
    code, out, err = _run(capsys, *argv, "--out", str(tmp_path / "impact.md"))
    assert code == 0 and out == []
    assert err[0] == WARNING and err[1].endswith("report written to " + str(tmp_path / "impact.md"))
    assert (tmp_path / "impact.md").read_text("utf-8").splitlines()[2] == WARNING


def test_diff_of_packs_with_their_own_revisions_warns_of_nothing(
    packs: tuple[Path, Path], corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, new = packs
    _replace(new / "pack.yaml", 'revision: "1"', 'revision: "2"')
    code, out, err = _run(capsys, "diff", "old", "new", "--corpus", str(corpus), "--format", "json")
    assert code == 0 and err == []
    assert "warnings" not in json.loads("\n".join(out))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_reload_says_it_in_the_servers_language(packs: tuple[Path, Path]) -> None:
    old, new = packs
    handler = _Records()
    logger = logging.getLogger("fenliu.runtime")
    logger.addHandler(handler)
    try:
        with i18n.language("zh_CN"):
            triage = Triage.from_path(old)
            result = triage.load(new)
        assert result.ok
        attempt = triage.last_attempt()
        assert attempt is not None and attempt.outcome == "LOADED"
        assert attempt.warnings == (WARNING_ZH.removeprefix("警告："),)
        kept = [r for r in handler.records if getattr(r, "event", "") == "pack_revision_kept"]
        assert [r.getMessage() for r in kept] == [WARNING_ZH.removeprefix("警告：")]
        with i18n.language("en"):
            _replace(new / "rules.yaml", "{people_involved: {gte: 31}}", "{people_involved: {gte: 32}}")
            triage.load(new)
        attempt = triage.last_attempt()
        assert attempt is not None and attempt.warnings == (WARNING.removeprefix("warning: "),)
    finally:
        logger.removeHandler(handler)
