"""Generated rule packs of a given size, to measure how a decision's cost grows with the pack.

``write_pack(n_rules, dest)`` writes a valid pack folder of exactly ``n_rules`` rules, shaped like a
real triage pack grown large (the proportions of the reference pack, with more categories):

* ``classify`` (40%): one keyword rule per category, 2-4 words each, distinct priorities. The words are
  drawn from the words the benchmark corpus actually uses (the reference pack's keywords and two-
  character words of the corpus phrasings), so the rules match real texts at realistic rates.
* ``refine`` (10%): a category and further keywords move a complaint to a more specific category.
* ``exclude`` (5%): procedures, duplicates, reports, crimes, with referrals.
* ``grade`` (25%): numeric thresholds (people, money, repeat visits), some per category, some with flags;
  colour resolved by "highest" as in the reference pack.
* ``route`` (20%): groups of categories to an owner department, tier and approach, a few by colour.

Every stage stays inside the engine's limits (fewer than 240 fact fields and 500 tests on one field).
The pack is seeded: the same size always gives the same rules.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import yaml

from bench import corpus

SEED = 60200500
SIZES = (60, 200, 500)

_ZH = re.compile(r"[\u4e00-\u9fff]{2}")
_WUSHEN_KEYWORDS = [
    "退役",
    "军人",
    "优抚",
    "编制",
    "人事",
    "事业单位",
    "欠薪",
    "工资",
    "农民工",
    "工钱",
    "劳动合同",
    "辞退",
    "工伤",
    "加班",
    "确权",
    "权属",
    "土地证",
    "四至",
    "征地",
    "拆迁",
    "征收",
    "安置",
    "补偿款",
    "承包",
    "流转",
    "物业",
    "小区",
    "房屋质量",
    "保障房",
    "社保",
    "养老保险",
    "医保",
    "报销",
    "低保",
    "救助",
    "困难补助",
    "离婚",
    "赡养",
    "抚养",
    "家暴",
    "婚姻",
    "医院",
    "医疗",
    "手术",
    "误诊",
    "车祸",
    "交通事故",
    "学校",
    "学生",
    "教师",
    "入学",
    "集体收入",
    "分红",
    "村务",
    "村账",
    "草场",
    "草牧场",
    "牧场",
    "放牧",
    "网围栏",
    "宅基地",
    "房屋",
    "盖房",
    "邻居",
    "邻里",
    "排水",
    "通道",
    "企业",
    "煤矿",
    "污染",
    "粉尘",
    "噪音",
    "矿区",
    "林地",
    "林权",
    "商家",
    "消费",
    "合同",
    "假货",
    "法律援助",
]


def vocabulary() -> list[str]:
    """Words the generated rules may use: the reference keywords, then corpus bigrams."""
    words = dict.fromkeys(_WUSHEN_KEYWORDS)
    for phrases in corpus.PHRASES.values():
        for p in phrases:
            for i in range(len(p) - 1):
                m = _ZH.match(p, i)
                if m:
                    words.setdefault(m.group(0))
    return list(words)


def _split(n: int) -> dict[str, int]:
    counts = {
        "classify": round(n * 0.40),
        "refine": round(n * 0.10),
        "exclude": max(4, round(n * 0.05)),
        "grade": round(n * 0.25),
    }
    counts["route"] = n - sum(counts.values())
    return counts


def build(n_rules: int, seed: int = SEED) -> dict[str, Any]:
    """The pack as documents: {"pack.yaml": manifest, "tables.yaml": ..., "<stage>.yaml": ...}."""
    rng = random.Random(seed * 1000 + n_rules)
    counts = _split(n_rules)
    vocab = vocabulary()
    n_cats = counts["classify"]
    cats = [f"c{i:03d}" for i in range(n_cats)]
    depts = [f"d{i:03d}" for i in range(max(8, n_cats // 4))] + [
        "petition_bureau",
        "court",
        "public_security",
        "discipline_inspection",
    ]
    stages_list = ["CONSULT", "ASSESS", "MEDIATE", "ARBITRATE", "LITIGATE"]
    tables: dict[str, Any] = {
        "departments": {"key": "department", "rows": {d: {"name": f"部门{d}"} for d in depts}},
        "exclusions": {
            "key": "exclusion",
            "rows": {
                "judicial": {"name": "司法程序"},
                "duplicate": {"name": "重复"},
                "misconduct_or_crime": {"name": "违法犯罪"},
            },
        },
        "categories": {
            "key": "category",
            "rows": {
                **{
                    c: {
                        "name": f"类别{c}",
                        "owner": rng.choice(depts[:-4]),
                        "entry_stage": rng.choice(stages_list[:3]),
                        "arbitrable": rng.random() < 0.15,
                    }
                    for c in cats
                },
                "unclassified": {
                    "name": "未分类",
                    "owner": "petition_bureau",
                    "entry_stage": "ASSESS",
                    "arbitrable": False,
                },
            },
        },
    }
    docs: dict[str, Any] = {}

    # classify: one rule per category.
    rules: list[dict[str, Any]] = []
    for i, c in enumerate(cats):
        rules.append(
            {
                "id": f"classify.{c}",
                "stage": "classify",
                "priority": 1000 - i,
                "when": {"keywords": rng.sample(vocab, rng.randint(2, 4))},
                "then": {"category": c},
            }
        )
    docs["classify.yaml"] = {"rules": rules}

    rules = []
    for i in range(counts["refine"]):
        src, dst = rng.sample(cats, 2)
        rules.append(
            {
                "id": f"refine.{i}",
                "stage": "refine",
                "priority": 500 - i,
                "when": {"category": src, "keywords": rng.sample(vocab, rng.randint(1, 3))},
                "then": {"category": dst},
            }
        )
    docs["refine.yaml"] = {"rules": rules}

    rules = [
        {
            "id": "exclude.judicial",
            "stage": "exclude",
            "priority": 40,
            "when": {"procedure": {"in": ["LITIGATION_PENDING", "JUDGMENT_EFFECTIVE"]}},
            "then": {"excluded": True, "exclusion": "judicial", "referred_to": "court"},
        },
        {
            "id": "exclude.duplicate",
            "stage": "exclude",
            "priority": 20,
            "when": {"existing_case_id": {"ne": ""}},
            "then": {
                "excluded": True,
                "exclusion": "duplicate",
                "referred_to": {"lookup": "categories.owner"},
            },
        },
        {
            "id": "exclude.report",
            "stage": "exclude",
            "priority": 12,
            "when": {"intent": "REPORT"},
            "then": {
                "excluded": True,
                "exclusion": "misconduct_or_crime",
                "referred_to": "discipline_inspection",
            },
        },
        {
            "id": "exclude.crime",
            "stage": "exclude",
            "priority": 10,
            "when": {"crime_involved": True},
            "then": {"excluded": True, "exclusion": "misconduct_or_crime", "referred_to": "public_security"},
        },
    ]
    for i in range(counts["exclude"] - len(rules)):
        rules.append(
            {
                "id": f"exclude.category.{i}",
                "stage": "exclude",
                "priority": 5,
                "when": {"category": rng.choice(cats), "procedure": "ARBITRATION_PENDING"},
                "then": {"excluded": True, "exclusion": "judicial", "referred_to": "court"},
            }
        )
    docs["exclude.yaml"] = {"rules": rules}

    rules = [{"id": "grade.blue", "stage": "grade", "then": {"color": "BLUE"}}]
    fields = ("people_involved", "amount_yuan", "repeat_visits")
    for i in range(counts["grade"] - 1):
        fld = rng.choice(fields)
        threshold: float = {
            "people_involved": rng.randint(2, 60),
            "amount_yuan": rng.choice((50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000)) + i,
            "repeat_visits": rng.randint(1, 6),
        }[fld]
        when: dict[str, Any] = {fld: {"gte": threshold}}
        kind = rng.random()
        if kind < 0.5:
            when["category"] = {"in": rng.sample(cats, min(len(cats), rng.randint(1, 5)))}
        elif kind < 0.75:
            when[rng.choice(("vulnerable", "sensitive_period", "conflict_verbal", "cross_village"))] = True
        rules.append(
            {
                "id": f"grade.{i}",
                "stage": "grade",
                "when": when,
                "then": {"color": rng.choice(("YELLOW", "YELLOW", "RED"))},
            }
        )
    docs["grade.yaml"] = {"rules": rules}

    rules = [
        {
            "id": "route.owner",
            "stage": "route",
            "priority": 0,
            "then": {
                "owner_department": {"lookup": "categories.owner"},
                "tier": "VILLAGE",
                "approach": "IMMEDIATE",
            },
        },
        {
            "id": "route.excluded",
            "stage": "route",
            "priority": 90,
            "when": {"excluded": True},
            "then": {"owner_department": {"copy": "referred_to"}, "approach": "NONE"},
        },
        {
            "id": "route.red",
            "stage": "route",
            "priority": 80,
            "when": {"color": "RED"},
            "then": {"tier": "BANNER", "approach": "JOINT"},
        },
    ]
    for i in range(counts["route"] - len(rules)):
        when = {"category": {"in": rng.sample(cats, min(len(cats), rng.randint(2, 8)))}}
        if rng.random() < 0.3:
            when["color"] = rng.choice(("YELLOW", "BLUE"))
        rules.append(
            {
                "id": f"route.group.{i}",
                "stage": "route",
                "priority": 10 + rng.randint(0, 60),
                "when": when,
                "then": {
                    "owner_department": rng.choice(depts[:-4]),
                    "tier": rng.choice(("TOWNSHIP", "BANNER")),
                    "approach": "DIVERTED",
                },
            }
        )
    docs["route.yaml"] = {"rules": rules}

    docs["tables.yaml"] = {"tables": tables}
    docs["pack.yaml"] = {
        "name": f"gen{n_rules}",
        "revision": "1",
        "description": f"generated: {n_rules} rules",
        "stages": ["classify", "refine", "exclude", "grade", "route"],
        "defaults": {"owner_department": "petition_bureau"},
    }
    total = sum(len(d.get("rules", [])) for d in docs.values())
    assert total == n_rules, (total, n_rules)
    return docs


def write_pack(n_rules: int, dest: str | Path, seed: int = SEED) -> Path:
    """Write the generated pack of ``n_rules`` rules into ``dest`` (created); return ``dest``."""
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    for name, doc in build(n_rules, seed).items():
        (root / name).write_text(
            yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=200), encoding="utf-8"
        )
    return root
