"""Every kind of broken pack: `fenliu check` names file, line and rule id, and exits non-zero."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fenliu import PackError, load_pack
from fenliu.cli.commands import main


def check(pack: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", str(pack)])
    return code, capsys.readouterr().out


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    hits = [i for i, line in enumerate(path.read_text("utf-8").splitlines(), 1) if needle in line]
    return hits[nth - 1]


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), "utf-8")


def append_rule(pack: Path, name: str, body: str) -> Path:
    f = pack / name
    f.write_text("rules:\n" + body, "utf-8")
    return f


def assert_reported(out: str, file: Path, line: int, rule: str, code: str) -> None:
    pattern = re.escape(f"{file.name}:{line}: {rule}: ")
    hits = [ln for ln in out.splitlines() if re.search(pattern, ln) and f"[{code}]" in ln]
    assert hits, f"expected {file.name}:{line}: {rule}: ... [{code}] in:\n{out}"


def test_check_reference_pack_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(Path(__file__).resolve().parents[1] / "rules" / "wushen", capsys)
    assert code == 0, out
    assert out.startswith("ok: wushen ")


def test_check_yaml_syntax_error_names_line(pack_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = pack_copy / "grade.yaml"
    replace(f, "    when: {extreme_risk: true}", "    when: {extreme_risk: true")
    code, out = check(pack_copy, capsys)
    assert code == 1
    assert re.search(r"grade\.yaml:\d+: -: YAML syntax", out), out


#: One edit to one file of the pack, and the finding it must give: (file, old, new, the text on the
#: reported line, rule, code, and a sentence the output must also hold).
EDITS = {
    "schema-violation-names-rule": (
        "grade.yaml",
        "  - id: grade.red.viral\n    stage: grade\n",
        "  - id: grade.red.viral\n    stage: grade\n    priority: high\n",
        "priority: high",
        "grade.red.viral",
        "schema",
        "",
    ),
    "unknown-rule-key-suggests-fix": (
        "grade.yaml",
        "    description: 网络舆情已扩散",
        "    descripton: 网络舆情已扩散",
        "descripton",
        "grade.red.viral",
        "schema",
        "did you mean 'description'",
    ),
    "unknown-field-suggests-fix": (
        "grade.yaml",
        "when: {extreme_risk: true}",
        "when: {extreme_risks: true}",
        "extreme_risks",
        "grade.red.extreme_risk",
        "unknown-field",
        "did you mean 'extreme_risk'",
    ),
    "unknown-enum-value": (
        "grade.yaml",
        "when: {public_opinion: VIRAL}",
        "when: {public_opinion: VIRALL}",
        "VIRALL",
        "grade.red.viral",
        "unknown-value",
        "",
    ),
    "category-without-owner": (
        "tables.yaml",
        "        name: 林权\n        owner: forestry_grassland\n",
        "        name: 林权\n",
        "      forest_rights:",
        "forest_rights",
        "missing-column",
        "has no owner department (column 'owner')",
    ),
    "unknown-department-in-table": (
        "tables.yaml",
        "co_departments: [womens_federation]",
        "co_departments: [womens_federaton]",
        "      marriage_family:",
        "marriage_family",
        "unknown-value",
        "",
    ),
    "deadline-over-sixty-days": (
        "tables.yaml",
        "YELLOW: {first_contact: 24h, plan: 5d, resolve: 30d}",
        "YELLOW: {first_contact: 24h, plan: 5d, resolve: 61d}",
        "resolve: 61d",
        "YELLOW",
        "deadline-too-long",
        "",
    ),
    "unknown-placeholder-in-guidance": (
        "exclude.yaml",
        "请向{referred_to}了解办理进展。",
        "请向{refered_to}了解办理进展。",
        "{refered_to}",
        "exclude.judicial.court",
        "bad-guidance",
        "",
    ),
}


@pytest.mark.parametrize(
    ("name", "old", "new", "at", "rule", "code", "also"), EDITS.values(), ids=list(EDITS)
)
def test_check_bad_edit_is_refused_naming_file_line_and_rule(
    pack_copy: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    old: str,
    new: str,
    at: str,
    rule: str,
    code: str,
    also: str,
) -> None:
    f = pack_copy / name
    replace(f, old, new)
    exit_code, out = check(pack_copy, capsys)
    assert exit_code == 1
    assert_reported(out, f, line_of(f, at), rule, code)
    assert also in out


_MANY_VALUES = ", ".join(f"'V{i}'" for i in range(501))

#: One rule added in a file of its own, and the finding it must give: (the rule, the line reported,
#: rule id, code, and a sentence the output must also hold).
ADDED_RULES = {
    "engine-operator-as-field": (
        "  - id: grade.nex\n    stage: grade\n    when: {$nex: {amount_yuan: 1}}\n    then: {color: RED}\n",
        4,
        "grade.nex",
        "bad-operator",
        "",
    ),
    "bad-regex": (
        "  - id: classify.rx\n    stage: classify\n    when: {pattern: '(abc'}\n    then: {category: neighbor}\n",
        4,
        "classify.rx",
        "bad-regex",
        "",
    ),
    "duplicate-rule-id": (  # names where the first one is
        "  - id: grade.blue\n    stage: grade\n    then: {color: BLUE}\n",
        2,
        "grade.blue",
        "duplicate-rule",
        "grade.yaml:",
    ),
    "priority-out-of-engine-range": (
        "  - id: grade.neg\n    stage: grade\n    priority: -5\n    then: {color: RED}\n",
        4,
        "grade.neg",
        "schema",
        "",
    ),
    "long-in-list": (
        f"  - id: route.many\n    stage: route\n    when: {{region.village_code: {{in: [{_MANY_VALUES}]}}}}\n    then: {{tier: VILLAGE}}\n",
        4,
        "route.many",
        "engine-too-many-tests",
        "",
    ),
    # The engine never returns from building a ruleset with more than 512 tests under one node.
    "more-than-500-tests-on-one-field": (
        "".join(
            f"  - id: route.region_{i}\n    stage: route\n    when: {{region.township_code: 'T{i:04d}'}}\n    then: {{tier: TOWNSHIP}}\n"
            for i in range(501)
        ),
        2,
        "route.region_0",
        "engine-too-many-tests",
        "",
    ),
    # A deadline is held in hours; a test like {first_contact_within: 3d} could never match.
    "test-on-a-deadline-duration": (
        "  - id: funnel.fast\n    stage: funnel\n    when: {first_contact_within: 3d}\n    then: {stage: CONSULT}\n",
        4,
        "funnel.fast",
        "untestable-field",
        "",
    ),
}


@pytest.mark.parametrize(
    ("body", "line", "rule", "code", "also"), ADDED_RULES.values(), ids=list(ADDED_RULES)
)
def test_check_bad_rule_is_refused_naming_file_line_and_rule(
    pack_copy: Path, capsys: pytest.CaptureFixture[str], body: str, line: int, rule: str, code: str, also: str
) -> None:
    f = append_rule(pack_copy, "zz_extra.yaml", body)
    exit_code, out = check(pack_copy, capsys)
    assert exit_code == 1
    assert_reported(out, f, line, rule, code)
    assert also in out


@pytest.mark.parametrize("bad", ["{gtee: 30}", "{$gte: 30}", "{$ne: 30}"])
def test_check_misspelt_operator_is_refused(
    pack_copy: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    f = pack_copy / "grade.yaml"
    replace(f, "when: {people_involved: {gte: 30}}", f"when: {{people_involved: {bad}}}")
    code, out = check(pack_copy, capsys)
    assert code == 1
    assert_reported(out, f, line_of(f, bad), "grade.red.crowd", "bad-operator")


def test_check_number_compared_with_text_is_refused(
    pack_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = pack_copy / "grade.yaml"
    replace(f, "when: {amount_yuan: {gte: 1000000}}", "when: {amount_yuan: {gte: '1000000'}}")
    replace(f, "when: {repeat_visits: {gte: 3}}", "when: {repeat_visits: '3'}")
    code, out = check(pack_copy, capsys)
    assert code == 1
    assert_reported(out, f, line_of(f, "'1000000'"), "grade.red.amount", "type-mismatch")
    assert_reported(out, f, line_of(f, "repeat_visits: '3'"), "grade.red.repeat_visits", "type-mismatch")


def test_check_too_many_fact_properties_is_refused(
    pack_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The engine refuses facts with more than 253 properties; each keyword group is one property.
    body = "".join(
        f"  - id: classify.kw_{i}\n    stage: classify\n    when: {{keywords: [词{i}]}}\n    then: {{category: neighbor}}\n"
        for i in range(241)
    )
    append_rule(pack_copy, "many_keywords.yaml", body)
    code, out = check(pack_copy, capsys)
    assert code == 1
    assert "[engine-too-many-properties]" in out


def test_check_every_error_is_reported_at_once(pack_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replace(pack_copy / "grade.yaml", "when: {public_opinion: VIRAL}", "when: {public_opinion: VIRALL}")
    replace(
        pack_copy / "route.yaml",
        "      tier: BANNER\n      approach: JOINT",
        "      tier: BANNERR\n      approach: JOINT",
    )
    replace(pack_copy / "funnel.yaml", "stage: funnel\n    priority: 0", "stage: funel\n    priority: 0")
    code, out = check(pack_copy, capsys)
    assert code == 1
    assert "grade.yaml" in out and "route.yaml" in out and "funnel.yaml" in out
    assert out.strip().endswith("3 error(s)")


def test_check_missing_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("rules: []\n", "utf-8")
    with pytest.raises(PackError) as exc:
        load_pack(tmp_path)
    assert exc.value.problems[0].code == "no-manifest"


def test_check_failing_case_makes_test_fail(pack_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replace(pack_copy / "grade.yaml", "people_involved: {gte: 10}", "people_involved: {gte: 11}")
    code = main(["test", str(pack_copy)])
    out = capsys.readouterr().out
    assert code == 1
    assert 'color: expected "RED", got "YELLOW"' in out
    assert re.search(r"color_test\.yaml:\d+: FAIL ", out)


def test_keywords_that_normalize_alike_compile_and_match(pack_copy: Path) -> None:
    # ＡＢＣ (full-width) and abc are one keyword after NFKC and case-folding; the list still compiles.
    from fenliu import Decider, complaint_from_dict

    append_rule(
        pack_copy,
        "extra.yaml",
        "  - id: classify.abc\n    stage: classify\n    priority: 99\n    when: {keywords: [ＡＢＣ, abc]}\n    then: {category: neighbor}\n",
    )
    pack = load_pack(pack_copy)
    c = complaint_from_dict({"id": "x", "text": "Abc 的问题"})
    for backend in ("durable", "python"):
        d = Decider(pack, backend=backend, memoize=False)
        assert d.outcome(c).category == "neighbor"
        d.close()


# -- test files are checked like rules ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_file_starts_with_the_cases_schema_line() -> None:
    files = sorted([*ROOT.glob("rules/**/*_test.yaml"), *ROOT.glob("tests/packs/**/*_test.yaml")])
    assert len(files) >= 9
    for f in files:
        first = f.read_text("utf-8").splitlines()[0]
        m = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
        assert m, f"{f}: starts with {first!r}"
        assert (f.parent / m.group(1)).resolve() == ROOT / "service/fenliu/schema/cases.schema.json", f


def test_the_cases_schema_is_the_one_the_field_tables_give() -> None:
    import json

    from fenliu import Decider
    from fenliu.domain import fields as F
    from fenliu.domain import model
    from fenliu.domain.errors import ComplaintError
    from fenliu.packs import case_schema

    shipped = (ROOT / "service/fenliu/schema/cases.schema.json").read_text("utf-8")
    assert shipped == case_schema.render(), (
        "run: python -m fenliu.packs.case_schema > service/fenliu/schema/cases.schema.json"
    )
    case = json.loads(shipped)["properties"]["cases"]["items"]["properties"]
    complaint, expect = case["complaint"]["properties"], case["expect"]["properties"]
    # every key complaint_from_dict reads, and the derived fields a case may give, and nothing else
    for key in complaint:
        if key in model.DERIVED_FIELDS:
            continue
        bad = (
            {"id": "x", "text": "x", key: object()} if key not in ("id", "text") else {"id": "x", "text": "x"}
        )
        try:
            model.complaint_from_dict(bad)
        except ComplaintError as e:
            assert all(v.description != "unknown field" for v in e.violations), key
    with pytest.raises(ComplaintError, match="unknown field"):
        model.complaint_from_dict({"id": "x", "text": "x", "colour": "RED"})
    assert set(complaint) == {(f.proto or f.name).split(".", 1)[0] for f in F.COMPLAINT_TABLE}
    assert set(complaint["region"]["properties"]) == set(model.REGION_FIELDS)
    assert set(complaint["channel"]["enum"]) == {*model.CHANNELS, model.UNSPECIFIED, "", None}
    # expect: what the decision's JSON form holds (but ids and the trace), every decision field in it
    decision = model.complaint_from_dict({"id": "x", "text": "x"})
    d = Decider(load_pack(ROOT / "tests/packs/base"))
    try:
        keys = set(d.decide(decision).to_dict(trace=True)) - {"trace", "notes", "decision_id"}
    finally:
        d.close()
    assert set(expect) == keys
    assert {f.name for f in F.DECISION_TABLE if f.type.kind != "duration"} <= set(expect)
    assert set(expect["deadlines"]["properties"]) == set(F.DEADLINE_SLOTS.values())
    assert expect["color"]["enum"][:-1] == list(F.DECISION_FIELDS["color"].values)


CASE_EDITS = {
    "unknown-expect-field": (
        "color_test.yaml",
        "    expect:\n      color: BLUE",
        "    expect:\n      colour: BLUE",
        "colour: BLUE",
        "schema",
        "unknown key 'colour'; did you mean 'color'?",
    ),
    "unknown-complaint-field": (
        "color_test.yaml",
        "      people_involved: 2\n",
        "      people_involvd: 2\n",
        "people_involvd",
        "schema",
        "unknown key 'people_involvd'; did you mean 'people_involved'?",
    ),
    "unknown-enum-value": (
        "funnel_test.yaml",
        "intent: LITIGATION",
        "intent: LITIGATON",
        "LITIGATON",
        "schema",
        "did you mean 'LITIGATION'?",
    ),
    "unknown-expected-enum-value": (
        "color_test.yaml",
        "      color: YELLOW\n",
        "      color: YELOW\n",
        "YELOW",
        "schema",
        "did you mean 'YELLOW'?",
    ),
    "unknown-category": (
        "categories_test.yaml",
        "      category: neighbor\n",
        "      category: neighbour\n",
        "neighbour",
        "unknown-value",
        "expect.category: 'neighbour' is not a code of table 'categories'; did you mean 'neighbor'?",
    ),
    "unknown-department": (
        "categories_test.yaml",
        "owner_department: justice",
        "owner_department: justise",
        "justise",
        "unknown-value",
        "did you mean 'justice'?",
    ),
}


@pytest.mark.parametrize("case", CASE_EDITS.values(), ids=list(CASE_EDITS))
def test_check_bad_case_is_refused_at_its_line_with_a_suggestion(
    pack_copy: Path, capsys: pytest.CaptureFixture[str], case: tuple[str, str, str, str, str, str]
) -> None:
    name, old, new, needle, code, message = case
    f = pack_copy / name
    replace(f, old, new)
    status, out = check(pack_copy, capsys)
    assert status == 1
    assert_reported(out, f, line_of(f, needle), "-", code)
    assert message in out, out
