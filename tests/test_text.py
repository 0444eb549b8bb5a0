"""The text step: the lexicon's scores, the learned model, suggestions, and how a pack refuses a bad one.

Everything runs on the real reference pack (or a copy of it changed by the test), the real
durable_rules engine and, for the model, a model really trained with scikit-learn.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fenliu import Decider, Pack, PackError, Triage, complaint_from_dict, load_pack
from fenliu.authoring.train import Labelled, fit
from fenliu.cli import commands as cli
from fenliu.compiling.compiler import normalize_text
from fenliu.engine.enrich import enrichment_for
from fenliu.engine.text import (
    Lexicon,
    TextModel,
    complaint_text,
    decide_lexicon,
    load_model,
    ngrams,
    pack_model,
)
from fenliu.packs.types import LexiconEntry

# A small labelled corpus of our own (the shipped one is corpus/labelled.jsonl): four categories,
# told the way people tell them, and one that is nobody's business here.
FIXTURE: list[tuple[str, str]] = [
    ("wage_arrears", "在工地上干了三个月，老板一分钱没给，工钱要不回来"),
    ("wage_arrears", "包工头跑了，我们十几个人的工资没人管"),
    ("wage_arrears", "年底了，活干完了钱还没结，老板电话也不接"),
    ("wage_arrears", "给饭店打工半年，说好月底发钱，拖了四个月"),
    ("wage_arrears", "装修队干完活，房主说没钱，欠我们八千块"),
    ("wage_arrears", "在煤矿上开车，老板欠着两个月的钱不给"),
    ("marriage_family", "老伴走了以后，儿子儿媳不管我，也不给生活费"),
    ("marriage_family", "跟男人过不下去了，想离婚，孩子归谁"),
    ("marriage_family", "女婿喝了酒就动手打我女儿，身上全是伤"),
    ("marriage_family", "离婚时小区那套房子怎么分谈不拢"),
    ("marriage_family", "三个儿子都说没钱，谁也不养老娘"),
    ("marriage_family", "前夫不给孩子抚养费，一年多了一分没给"),
    ("traffic_accident", "在医院门口被电动车撞倒，骑车的人跑了"),
    ("traffic_accident", "过马路时被一辆三轮车刮倒，腿骨折了，对方不赔"),
    ("traffic_accident", "拉煤的大车把我家的车撞了，司机说没保险"),
    ("traffic_accident", "骑摩托车回家被后面的车追尾，住院花了两万"),
    ("traffic_accident", "儿子骑电动车被小车撞了，交警定了对方全责，可对方不给钱"),
    ("traffic_accident", "在路口让出租车蹭了，人摔在地上，司机不管"),
    ("enterprise_community", "化肥厂的废水流进我家草场，羊喝了拉肚子"),
    ("enterprise_community", "煤矿放炮把我家房子震裂了，矿上不认账"),
    ("enterprise_community", "电厂冒黑烟，一刮风院子里全是灰"),
    ("enterprise_community", "矿上的大车日夜拉煤，路压坏了，灰尘大得睁不开眼"),
    ("enterprise_community", "化工厂半夜排气，味道呛得人喘不上气"),
    ("enterprise_community", "煤矿采空区塌陷，我家的地裂开了好几道缝"),
    ("unclassified", "你好，请问旗政府办公室电话多少"),
    ("unclassified", "谢谢你们上次帮忙"),
    ("unclassified", "我想问一下明天上班吗"),
]


def _labelled(split_every: int = 0) -> list[Labelled]:
    return [
        Labelled(f"fx-{i}", "", text, cat, "test" if split_every and i % split_every == 0 else "train")
        for i, (cat, text) in enumerate(FIXTURE)
    ]


def _write_corpus(path: Path, items: list[Labelled]) -> Path:
    path.write_text(
        "".join(
            json.dumps(
                {"id": x.id, "title": x.title, "text": x.text, "category": x.category, "split": x.split}
            )
            + "\n"
            for x in items
        ),
        "utf-8",
    )
    return path


def _entry(cat: str, kind: str, words: tuple[str, ...], weight: float, line: int = 1) -> LexiconEntry:
    return LexiconEntry(cat, kind, words, weight, "lex.yaml", line, f"p/lex.yaml:{line}")


def _set_text(pack_dir: Path, text: str) -> None:
    """Replace the manifest's ``text:`` section (the last one in the reference pack's pack.yaml)."""
    manifest = pack_dir / "pack.yaml"
    head = manifest.read_text("utf-8").split("\ntext:\n")[0]
    manifest.write_text(head + "\ntext:\n" + text, "utf-8")


# ---------------------------------------------------------------------------------------------------
# The lexicon


def test_lexicon_counts_terms_once_together_only_in_one_sentence_and_against_subtracts() -> None:
    lex = Lexicon(
        [
            _entry("wage_arrears", "term", ("工钱",), 6, 1),
            _entry("wage_arrears", "together", ("老板", "不给"), 4, 2),
            _entry("wage_arrears", "against", ("事业单位",), 4, 3),
            _entry("neighbor", "together", ("邻居", "排水"), 5, 4),
            _entry("neighbor", "term", ("院墙",), 2, 5),
        ]
    )
    scored = {s.category: s for s in lex.score("工钱工钱，老板就是不给。邻居家的沟\n排水往我家流")}
    assert scored["wage_arrears"].score == 10  # 工钱 once (6) + 老板…不给 in one sentence (4)
    assert [c.label for c in scored["wage_arrears"].counted] == ["工钱", "老板+不给"]
    assert "neighbor" not in scored  # 邻居 and 排水 are in different sentences
    scored = {s.category: s for s in lex.score("事业单位拖欠工钱；邻居排水冲了院墙")}
    assert scored["wage_arrears"].score == 2  # 6 - 4
    assert scored["wage_arrears"].counted[-1].weight == -4
    assert scored["neighbor"].score == 7
    assert lex.score("") == []


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([("a", 9.0), ("b", 3.0)], ("a", True)),
        ([("a", 9.0), ("b", 8.0)], ("a", False)),  # not ahead by the margin
        ([("a", 5.0)], ("a", False)),  # below the threshold
        ([("a", 6.0)], ("a", True)),  # the threshold is reached, nobody else scored
        ([("a", -2.0)], ("", False)),  # only against entries
        ([], ("", False)),
    ],
)
def test_lexicon_winner_is_confident_only_past_threshold_and_margin(
    scores: list[tuple[str, float]], expected: tuple[str, bool]
) -> None:
    from fenliu.engine.text import Scored

    assert decide_lexicon([Scored(c, s, ()) for c, s in scores], threshold=6, margin=2) == expected


def test_reference_pack_lexicon_has_every_category_with_forty_entries(wushen: Pack) -> None:
    per: dict[str, int] = {}
    for e in wushen.lexicon:
        per[e.category] = per.get(e.category, 0) + 1
    assert set(per) == set(wushen.categories) - {"unclassified"}
    thin = {c: n for c, n in per.items() if n < 40}
    assert not thin, f"categories with fewer than 40 lexicon entries: {thin}"


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("在医院门口被电动车撞倒，骑车的人跑了", "traffic_accident"),
        ("离婚时小区那套房子怎么分谈不拢", "marriage_family"),
        ("化肥厂的废水流进我家草场，羊喝了拉肚子", "enterprise_community"),
        ("我们几个农民工的工资，包工头拖了半年", "wage_arrears"),
        ("退役军人安置的事，民政说归退役军人事务局", "veterans"),
    ],
)
def test_place_words_do_not_outweigh_the_grievance(
    durable_decider: Decider, text: str, category: str
) -> None:
    d = durable_decider.decide(complaint_from_dict({"id": "x", "text": text}))
    assert d.outcome.category == category


def test_unclassified_decision_names_suggestions_and_trace_shows_what_counted(wushen: Pack) -> None:
    decider = Decider(wushen, backend="durable", text_model=False)  # the lexicon's own suggestions
    try:
        # 医院 alone is a place word: too little for medical to win, so a clerk picks.
        d = decider.decide(complaint_from_dict({"id": "x", "text": "昨天去了趟医院，想问问"}))
        assert d.outcome.category == "unclassified"
        out = d.to_dict(trace=True)
        assert 1 <= len(out["suggestions"]) <= 3
        assert out["suggestions"][0]["category"] == "medical"
        assert any(n.startswith("lexicon medical ") and "lexicon/medical.yaml:" in n for n in out["notes"])
        # A classified decision carries none.
        d = decider.decide(complaint_from_dict({"id": "y", "text": "包工头欠我们的工钱一直不给"}))
        assert d.outcome.category == "wage_arrears"
        assert d.to_dict()["suggestions"] == []
    finally:
        decider.close()


def test_valid_hint_still_decides_over_the_lexicon(durable_decider: Decider) -> None:
    d = durable_decider.decide(
        complaint_from_dict({"id": "x", "text": "包工头欠我们的工钱一直不给", "category_hint": "neighbor"})
    )
    assert d.outcome.category == "neighbor"


def test_case_may_give_derived_fields_directly(wushen: Pack) -> None:
    from dataclasses import replace

    decider = Decider(wushen, backend="python", memoize=False)
    c = complaint_from_dict({"id": "x", "text": "包工头欠我们的工钱一直不给"})
    given = replace(c, enriched=True, text_category="neighbor", text_confident=True)
    assert decider.decide(given).outcome.category == "neighbor"
    given = replace(c, enriched=True, model_category="education", model_confident=True)
    assert decider.decide(given).outcome.category == "education"


def test_memoized_decisions_equal_fresh_ones_with_the_text_step(wushen: Pack) -> None:
    """The differential for the text step: memo, durable_rules and the plain interpretation agree."""
    memo = Decider(wushen, backend="durable")
    fresh = Decider(wushen, backend="durable", memoize=False)
    plain = Decider(wushen, backend="python", memoize=False)
    try:
        for i, (_cat, text) in enumerate(FIXTURE * 2):
            c = complaint_from_dict({"id": f"c{i}", "text": text, "people_involved": 1 + i % 4})
            a, b, p = memo.decide(c), fresh.decide(c), plain.decide(c)
            assert a.outcome == b.outcome == p.outcome
            assert a.suggestions == b.suggestions == p.suggestions
            assert a.text_notes == b.text_notes
    finally:
        memo.close()
        fresh.close()
        plain.close()


def test_pack_without_lexicon_has_no_enrichment_and_no_suggestions() -> None:
    pack = load_pack(Path(__file__).parent / "packs" / "base")
    assert not pack.lexicon
    decider = Decider(pack, backend="python", memoize=False)
    assert not decider.enrichment
    d = decider.decide(complaint_from_dict({"id": "x", "text": "包工头欠我们的工钱一直不给"}))
    assert d.evidence is None and d.suggestions == ()


# ---------------------------------------------------------------------------------------------------
# Lexicon files


def test_lexicon_of_an_unknown_category_is_refused_with_file_and_line(pack_copy: Path) -> None:
    (pack_copy / "lexicon" / "bad.yaml").write_text(
        "lexicon:\n  category: wage_arrear\n  terms:\n    - {term: 欠薪, weight: 6}\n", "utf-8"
    )
    with pytest.raises(PackError) as e:
        load_pack(pack_copy)
    shown = [str(p) for p in e.value.problems]
    assert any("lexicon/bad.yaml:2" in s and "did you mean 'wage_arrears'" in s for s in shown), shown


def test_bad_lexicon_files_are_refused_with_file_and_line(pack_copy: Path) -> None:
    (pack_copy / "lexicon" / "neighbor.yaml").write_text(
        "lexicon:\n"
        "  category: neighbor\n"
        "  terms:\n"
        "    - {term: 邻居, weight: 11}\n"
        "    - {term: 院墙, weight: 3, colour: red}\n",
        "utf-8",
    )
    with pytest.raises(PackError) as e:
        load_pack(pack_copy)
    shown = [str(p) for p in e.value.problems]
    assert any("lexicon/neighbor.yaml:4" in s and "weight" in s for s in shown), shown
    assert any("lexicon/neighbor.yaml:5" in s and "colour" in s for s in shown), shown


def test_lint_warns_of_shared_short_common_separated_and_repeated_terms(pack_copy: Path) -> None:
    from fenliu import lint

    (pack_copy / "lexicon" / "neighbor.yaml").write_text(
        "lexicon:\n"
        "  category: neighbor\n"
        "  terms:\n"
        "    - {term: 墙, weight: 3}\n"
        "    - {term: 问题, weight: 2}\n"
        "    - {term: 院墙，围墙, weight: 3}\n"
        "    - {term: 工钱, weight: 6}\n"
        "    - {term: 邻居, weight: 4}\n"
        "  together:\n"
        "    - {words: [邻居, 排水], weight: 5}\n"
        "    - {words: [排水, 邻居], weight: 3}\n",
        "utf-8",
    )
    pack = load_pack(pack_copy)
    decider = Decider(pack, backend="python", memoize=False)
    findings = lint(pack, decider.compiled, corpus=["邻居家", "邻居的树", "我邻居", "工钱"])
    codes = {(f.code, f.line) for f in findings if f.file.endswith("lexicon/neighbor.yaml")}
    assert ("lexicon-short-term", 4) in codes
    assert ("lexicon-common-term", 5) in codes
    assert ("lexicon-separator", 6) in codes
    assert ("lexicon-too-common", 8) in codes  # 邻居 is in 3 of 4 complaints
    assert ("lexicon-duplicate", 11) in codes  # the same words again, in another order
    assert ("lexicon-duplicate", 10) not in codes  # the first of them
    shared = [f for f in findings if f.code == "lexicon-shared-term" and "'工钱'" in f.message]
    wage_weight = next(e.weight for e in pack.lexicon if e.category == "wage_arrears" and e.label == "工钱")
    assert bool(shared) == (wage_weight == 6)
    assert all(f.severity == "warning" for f in findings if f.code.startswith("lexicon-"))


# ---------------------------------------------------------------------------------------------------
# The model


def _train_into(pack_dir: Path, items: list[Labelled], confidence: float = 0.99) -> Path:
    """Train a model on ``items`` into the pack; at the default confidence it only ever suggests (a
    model of 27 complaints is not one the pack's own cases would let decide)."""
    corpus = _write_corpus(pack_dir.parent / "corpus.jsonl", items)
    _set_text(
        pack_dir, f"  threshold: 6\n  margin: 2\n  model: text_model.npz\n  model_confidence: {confidence}\n"
    )
    assert cli.main(["train", str(pack_dir), str(corpus)]) == 0
    return pack_dir / "text_model.npz"


@pytest.mark.parametrize("scale", [None, 0.02], ids=["words alone (the default)", "with lexicon scores"])
def test_trained_model_predicts_what_scikit_learn_predicts(pack_copy: Path, scale: float | None) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from fenliu.authoring import train
    from fenliu.engine.text import Lexicon, complaint_text, save_model

    items = _labelled()
    if scale is None:  # the command, with its default settings
        path, scale = _train_into(pack_copy, items), train.LEXICON_SCALE
        pack = load_pack(pack_copy)
    else:
        path = _train_into(pack_copy, items)
        pack = load_pack(pack_copy)
        save_model(path, fit(items, pack, lexicon_scale=scale))
    model = load_model(path, pack_name=pack.name, categories=pack.categories)
    import scipy.sparse as sp

    texts = [complaint_text(x.title, x.text) for x in items]
    lexicon = Lexicon(pack.lexicon)
    assert model.lexicon_scale == scale
    assert model.lexicon == (lexicon.categories if scale else ())

    def features(ts: list[str], fitted: bool) -> Any:
        grams = vec.transform(ts) if fitted else vec.fit_transform(ts)
        if not scale:
            return grams
        lex = np.zeros((len(ts), len(lexicon.categories)))
        for i, t in enumerate(ts):
            for s in lexicon.score(t):
                lex[i, lexicon.categories.index(s.category)] = max(s.score, 0) * scale
        return sp.hstack([grams, sp.csr_matrix(lex)]).tocsr()

    vec = TfidfVectorizer(analyzer=ngrams, sublinear_tf=True, min_df=train.MIN_DF)
    clf = LogisticRegression(C=train.C, max_iter=2000).fit(
        features(texts, False), [x.category for x in items]
    )
    assert model.classes == tuple(clf.classes_)
    probe = [*texts, complaint_text("", "老板欠工钱，还撞了我的车"), complaint_text("", "完全无关")]
    want = clf.predict_proba(features(probe, True))
    got = np.array([model.predict(t, [(s.category, s.score) for s in lexicon.score(t)]) for t in probe])
    assert np.allclose(got, want, atol=1e-4)
    # with them, the lexicon's scores move the model: the same words without them read differently;
    # without them, the scores change nothing
    wage = complaint_text("", "老板欠工钱，还撞了我的车")
    assert np.allclose(model.predict(wage), got[len(texts)]) == (not scale)


def test_model_is_part_of_the_digest_and_decides_when_lexicon_is_not_confident(pack_copy: Path) -> None:
    before = load_pack(pack_copy).digest
    _train_into(pack_copy, _labelled(), confidence=0.3)
    pack = load_pack(pack_copy)
    assert pack.digest != before
    decider = Decider(pack, backend="durable")
    try:
        assert [e.name for e in decider.enrichment.enrichers] == ["lexicon", "model"]
        # spoken words no lexicon entry needs to hold, close to the fixture's own wage claims
        c = complaint_from_dict({"id": "m", "text": "老板一分钱没给，活干完了钱还没结"})
        enriched = decider.enrichment(c)
        d = decider.decide(c)
        if enriched.text_confident:
            assert d.outcome.category == enriched.text_category
        else:
            assert enriched.model_confident
            assert d.outcome.category == enriched.model_category == "wage_arrears"
            fired = [t["rule"] for t in d.to_dict(trace=True)["trace"]]
            assert "classify.model" in fired
        model_note = [n for n in d.to_dict(trace=True)["notes"] if n.startswith("model ")]
        assert model_note and "+" in model_note[0]
    finally:
        decider.close()


def test_model_words_in_the_trace_never_show_digits(pack_copy: Path) -> None:
    _train_into(pack_copy, _labelled())
    decider = Decider(load_pack(pack_copy), backend="python", memoize=False)
    d = decider.decide(
        complaint_from_dict({"id": "m", "text": "老板欠工钱，电话13812345678，身份证152701199001011234"})
    )
    for note in d.to_dict(trace=True)["notes"]:
        if note.startswith("model "):
            # "n-gram +0.31, n-gram +0.12, …" (an n-gram may hold a comma)
            pushed = re.findall(r"(.+?) [+-]\d+\.\d\d(?:, |$)", note.split(": ", 1)[1])
            assert pushed
            assert not any(ch.isdigit() for w in pushed for ch in w), pushed


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("missing", "missing"),
        ("corrupt", "corrupt"),
        ("other-pack", "trained for pack"),
        ("other-categories", "another version of the pack"),
    ],
)
def test_bad_model_file_is_refused_with_file_and_reason_and_old_pack_keeps_serving(
    pack_copy: Path, breakage: str, reason: str
) -> None:
    path = _train_into(pack_copy, _labelled())
    good = Triage.from_path(pack_copy)
    served = good.info()
    assert served is not None
    if breakage == "missing":
        path.unlink()
    elif breakage == "corrupt":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    else:
        with np.load(path, allow_pickle=False) as z:
            arrays: dict[str, Any] = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays["meta"]))
        if breakage == "other-pack":
            meta["pack"] = "elsewhere"
        else:
            meta["categories"] = "000000000000"
        arrays["meta"] = np.array(json.dumps(meta))
        with path.open("wb") as f:
            np.savez(f, **arrays)
    result = good.load(pack_copy)
    assert not result.ok
    shown = " ".join(str(p) for p in result.problems)
    assert "text_model.npz" in shown and reason in shown, shown
    now = good.info()
    assert now is not None and now.digest == served.digest


def test_floors_missed_on_the_test_split_refuse_the_pack(pack_copy: Path) -> None:
    items = _labelled(split_every=3)
    # one complaint labelled as no reading of its words would have it: no lexicon reaches 100%
    first = next(x for x in items if x.split == "test")
    other = next(c for c, _ in FIXTURE if c != first.category)
    items.append(Labelled("fx-mislabelled", "", first.text, other, "test"))
    _write_corpus(pack_copy / "split.jsonl", items)
    _set_text(pack_copy, "  threshold: 6\n  margin: 2\n  floors: {corpus: split.jsonl, lexicon: 1.0}\n")
    with pytest.raises(PackError) as e:
        Triage.from_path(pack_copy)
    shown = " ".join(str(p) for p in e.value.problems)
    assert "lexicon accuracy" in shown and "below its floor 100.0%" in shown and "pack.yaml" in shown
    _set_text(pack_copy, "  threshold: 6\n  margin: 2\n  floors: {corpus: split.jsonl, lexicon: 0.0}\n")
    assert Triage.from_path(pack_copy).info() is not None


def test_score_command_reports_each_way(pack_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = _labelled(split_every=3)
    _train_into(pack_copy, [x for x in items if x.split == "train"])
    corpus = _write_corpus(pack_copy.parent / "all.jsonl", items)
    capsys.readouterr()
    assert cli.main(["score", str(pack_copy), str(corpus), "--split", "test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"lexicon", "model", "both"}
    n = sum(1 for x in items if x.split == "test")
    for r in out.values():
        assert r["complaints"] == n
        assert 0 <= r["accuracy"] <= 1
        assert r["accuracy"] + r["to_person"] + r["wrong_department"] >= 0.999 - (
            r["to_person"] if any(c["expected"] == "unclassified" for c in r["confusions"]) else 0
        )
    assert cli.main(["score", str(pack_copy), str(corpus), "--split", "test"]) == 0
    table = capsys.readouterr().out
    assert "| accuracy |" in table and "| lexicon | model | both |" in table


def test_train_refuses_a_corpus_with_unknown_categories(pack_copy: Path) -> None:
    items = [*_labelled(), Labelled("z", "", "x", "weather", "train")]
    with pytest.raises(ValueError, match="weather"):
        fit(items, load_pack(pack_copy))


def test_enrichment_without_model_leaves_model_fields_alone(wushen: Pack) -> None:
    e = enrichment_for(wushen, model=False)
    c = e(complaint_from_dict({"id": "x", "text": "包工头欠我们的工钱一直不给"}))
    assert (
        c.enriched and c.text_category == "wage_arrears" and c.model_category == "" and not c.model_confident
    )


def test_with_the_model_suggestions_are_its_most_probable_categories(wushen: Pack) -> None:
    decider = Decider(wushen, backend="python", memoize=False)
    if not any(e.name == "model" for e in decider.enrichment.enrichers):
        pytest.fail("the reference pack ships its text model (rules/wushen/text_model.npz)")
    c = decider.enrichment(complaint_from_dict({"id": "x", "text": "我有个事情想问一下，不知道找谁"}))
    d = decider.decide(c)
    assert c.evidence is not None
    ranked = [cat for cat, _p in c.evidence.model if cat != "unclassified"][:3]
    if d.outcome.category == "unclassified":
        assert [s.category for s in d.suggestions] == ranked
        scores = [s.score for s in d.suggestions]
        assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    else:
        assert d.suggestions == ()


def test_an_extending_pack_inherits_the_base_packs_model_and_floors(tmp_path: Path) -> None:
    from fenliu.authoring.score import check_floors

    layer = tmp_path / "township"
    layer.mkdir()
    base = Path(__file__).resolve().parents[1] / "rules" / "wushen"
    (layer / "pack.yaml").write_text(
        f"name: township\nrevision: '1'\ndescription: x\nextends: {base}\n", "utf-8"
    )
    pack = load_pack(layer)
    assert pack.text.layer == "wushen" and pack.text.model_path == base / "text_model.npz"
    decider = Decider(pack, backend="python", memoize=False)
    assert [e.name for e in decider.enrichment.enrichers] == ["lexicon", "model"]
    assert check_floors(pack, decider) == []


def test_decision_log_keeps_the_models_reading_not_the_citizens_ngrams(wushen: Pack) -> None:
    from fenliu.serving.decision_log import entry

    decider = Decider(wushen, backend="python", memoize=False)
    c = complaint_from_dict({"id": "x", "text": "巴特尔反映老板欠他的工钱一直不给"})
    d = decider.decide(c)
    traced = [n for n in d.to_dict(trace=True)["notes"] if n.startswith("model ")]
    assert traced and ":" in traced[0]  # the trace shows the n-grams
    logged = [n for n in entry(d, c, hash_key=b"k" * 32)["decision"]["notes"] if n.startswith("model ")]
    assert logged == [traced[0].split(":", 1)[0]]
    assert "巴特" not in json.dumps(entry(d, c, hash_key=b"k" * 32), ensure_ascii=False)


def test_model_file_without_lexicon_weights_reads_ngrams_only_and_misfit_weights_are_refused(
    tmp_path: Path,
) -> None:
    from fenliu.engine.text import ModelError, save_model

    wushen = Path(__file__).resolve().parents[1] / "rules" / "wushen"
    pack = load_pack(wushen)
    shipped = tmp_path / "with_lexicon.npz"  # a model that reads the lexicon's scores too
    save_model(shipped, fit(_labelled(), pack, lexicon_scale=0.02))
    with np.load(shipped, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    model = load_model(shipped, pack_name=pack.name, categories=pack.categories)
    assert model.lexicon and model.lexicon_scale > 0
    text = "老板欠我们的工钱，说好年底结，到现在没给"
    scores = [(s.category, s.score) for s in Lexicon(pack.lexicon).score(text)]

    older = tmp_path / "older.npz"  # a model file written before models read the lexicon
    np.savez(older, **{k: v for k, v in arrays.items() if not k.startswith("lexicon")})
    plain = load_model(older, pack_name=pack.name, categories=pack.categories)
    assert plain.lexicon == ()
    assert np.allclose(plain.predict(text, scores), model.predict(text))  # the scores are ignored

    misfit = tmp_path / "misfit.npz"
    np.savez(misfit, **dict(arrays, lexicon_weights=arrays["lexicon_weights"][:, :3]))
    with pytest.raises(ModelError, match="lexicon weights"):
        load_model(misfit, pack_name=pack.name, categories=pack.categories)


# ---------------------------------------------------------------------------------------------------
# The fast paths against plain readings of the same definitions


def _plain_vector(model: TextModel, text: str) -> tuple[Any, Any]:
    """The model's features as the definition reads: every n-gram of :func:`ngrams` in the vocabulary,
    counted; TF-IDF with sublinear term frequency (as scikit-learn computes it, float32), L2-normalized."""
    counts = Counter(model.vocabulary[g] for g in ngrams(text) if g in model.vocabulary)
    if not counts:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float32)
    order = sorted(counts)
    idx = np.array(order, dtype=np.intp)
    tf = np.array([counts[j] for j in order], dtype=np.float32)
    vals = ((1.0 + np.log(tf)) * model.idf[idx]).astype(np.float32)
    norm = float(np.sqrt(vals @ vals))
    return idx, (vals / np.float32(norm)) if norm else vals


def _plain_found(lexicon: Lexicon, text: str) -> list[int]:
    """The lexicon's entries found, as the definition reads: a term or against-word anywhere in the
    text, a together-entry's words all in one sentence."""
    sentences = re.split(r"[。!?;\n]", text)
    out = []
    for i, e in enumerate(lexicon.entries):
        words = [normalize_text(w) for w in e.words]
        together = any(all(w in s for w in words) for s in sentences)
        if together if e.kind == "together" else words[0] in text:
            out.append(i)
    return out


def _train_texts() -> list[str]:
    from fenliu.authoring.train import read_labelled, train_split

    corpus = Path(__file__).resolve().parents[1] / "corpus" / "labelled.jsonl"
    items = train_split(read_labelled(corpus.read_text("utf-8").splitlines()))
    return [complaint_text(x.title, x.text) for x in items]


#: Texts the corpus lacks: digits, runs of whitespace, letters outside the basic plane, a word repeated
#: more often than the precomputed term frequencies reach, nothing the model knows.
_ODD = [
    "",
    " ",
    "\n\n",
    "0",
    "电话13912345678，身份证1502271990",
    "工钱  \t 没给\u3000老板",
    "𠀀𠀁 老板 𡘙",
    "欠薪" * 400,
    "xyz",
    "老板欠工钱。" * 3,
]


def test_model_features_and_probabilities_equal_a_plain_reading_bit_for_bit(wushen: Pack) -> None:
    model = pack_model(wushen)
    assert model is not None
    lexicon = Lexicon(wushen.lexicon)
    for text in [*_train_texts(), *_ODD]:
        idx, vals = model.vector(text)
        want_idx, want_vals = _plain_vector(model, text)
        assert idx.tolist() == want_idx.tolist(), text
        assert vals.tobytes() == want_vals.tobytes(), text
        scores = [(s.category, s.score) for s in lexicon.score(text)]
        # the probabilities as the model computed them before its features were found this way
        z = model.intercept + want_vals @ model.weights[want_idx] if len(want_idx) else model.intercept.copy()
        lex = model.lexicon_vector(scores)
        if lex.any():
            z = z + lex @ model.lexicon_weights
        e = np.exp(z - z.max())
        assert model.predict(text, scores).tobytes() == (e / e.sum()).astype(np.float64).tobytes(), text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet="老板欠工钱没给撞车离婚草场 0123456789ab\n。!?;，𠀀", max_size=80))
def test_model_features_equal_a_plain_reading_on_any_text(wushen: Pack, text: str) -> None:
    model = pack_model(wushen)
    assert model is not None
    idx, vals = model.vector(text)
    want_idx, want_vals = _plain_vector(model, text)
    assert idx.tolist() == want_idx.tolist()
    assert vals.tobytes() == want_vals.tobytes()


def test_model_whose_features_are_numbered_in_another_order_reads_the_same(wushen: Pack) -> None:
    model = pack_model(wushen)
    assert model is not None
    n = len(model.vocabulary)
    perm = np.random.default_rng(0).permutation(n)  # feature j of the model is feature perm[j] here
    shuffled = TextModel(
        model.classes,
        {g: int(perm[j]) for g, j in model.vocabulary.items()},
        model.idf[np.argsort(perm)],
        model.weights[np.argsort(perm)],
        model.intercept,
        model.meta,
    )
    for text in _train_texts()[:300]:
        idx, vals = shuffled.vector(text)
        want_idx, want_vals = _plain_vector(shuffled, text)
        assert idx.tolist() == want_idx.tolist() and vals.tobytes() == want_vals.tobytes()


def test_lexicon_finds_what_a_plain_reading_finds(wushen: Pack) -> None:
    lexicon = Lexicon(wushen.lexicon)
    together = 0
    for text in [*_train_texts(), *_ODD, "拖欠工资。老板不给", "老板拖着不给。"]:
        found = lexicon.found(text)
        assert found == _plain_found(lexicon, text), text
        together += any(lexicon.entries[i].kind == "together" for i in found)
    assert together > 100  # the corpus exercises the together-entries


def test_enrichment_outputs_are_the_plain_readings_outputs(wushen: Pack) -> None:
    """The enricher's fields and evidence from the fast paths equal those computed from the plain
    readings above (the model's probabilities, the lexicon's entries), on the train split."""
    decider = Decider(wushen, backend="durable")
    model = pack_model(wushen)
    assert model is not None
    lexicon = Lexicon(wushen.lexicon)
    for n, text in enumerate(_train_texts()[:400]):
        c = decider.enrichment(complaint_from_dict({"id": f"e{n}", "text": text}))
        ids = _plain_found(lexicon, text)
        assert ids == lexicon.found(text)
        want = model.predict(text, [(s.category, s.score) for s in lexicon.score(text)])
        top = sorted(range(len(want)), key=lambda i: (-want[i], i))[:4]
        assert c.evidence is not None
        assert c.evidence.model == tuple((model.classes[i], round(float(want[i]), 4)) for i in top)
        best = model.classes[top[0]]
        assert c.model_category == ("" if best == "unclassified" else best)


def test_training_is_deterministic_whatever_the_order_of_the_corpus(wushen: Pack) -> None:
    items = _labelled()
    one, two = fit(items, wushen), fit(list(reversed(items)), wushen)
    assert one.vocabulary == two.vocabulary and one.classes == two.classes
    for a, b in (
        (one.weights, two.weights),
        (one.intercept, two.intercept),
        (one.idf, two.idf),
        (one.lexicon_weights, two.lexicon_weights),
    ):
        assert a.tobytes() == b.tobytes()
