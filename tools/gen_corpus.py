#!/usr/bin/env python3
"""Generate a realistic, seeded corpus of complaints (JSON Lines) for ``fenliu diff`` and benchmarks.

    python tools/gen_corpus.py                          # corpus/complaints.jsonl, 2,000 complaints
    python tools/gen_corpus.py --count 100000 --out /tmp/big.jsonl --seed 7

Every complaint is made from a Chinese text template of one of the 22 categories of the Wushen
service list (or of no category), filled with local places, people, sums and times, then given the
structured fields an intake frontend sends. About a quarter are edge cases: both sides of every colour
threshold, the four exclusions, three-level termination with new facts, valid and invalid category
hints, texts that name two categories, empty texts with only a hint, re-triage after each stage.
The same seed always gives the same file. See corpus/README.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

_PACK = Path(__file__).resolve().parents[1] / "rules" / "wushen"

TOWNSHIPS = {
    "150626100": "嘎鲁图镇",
    "150626101": "乌审召镇",
    "150626102": "图克镇",
    "150626103": "乌兰陶勒盖镇",
    "150626104": "无定河镇",
    "150626105": "苏力德苏木",
}
VILLAGES = [
    "巴音敖包嘎查",
    "查干淖尔嘎查",
    "陶利嘎查",
    "河南村",
    "沙尔利格嘎查",
    "乌兰什巴台嘎查",
    "萨如拉社区",
    "呼和淖尔嘎查",
    "布日都嘎查",
    "纳林河村",
    "黄陶勒盖嘎查",
    "达布察克社区",
]
SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "赵", "巴特尔", "乌云", "其其格", "额尔敦", "高", "郝", "白"]
RELATIVES = ["父亲", "母亲", "丈夫", "妻子", "儿子", "女儿", "哥哥", "婆婆"]
COMPANIES = ["某能源公司", "某煤业有限公司", "某建筑工程公司", "某物流公司", "某劳务公司"]
PRODUCTS = ["电动车", "羊绒衫", "手机", "饲料", "化肥", "太阳能热水器"]

# Templates per category. Slots: {village} {township} {name} {rel} {n} {money} {months} {company} {product}.
TEMPLATES: dict[str, list[str]] = {
    "land_expropriation": [
        "{township}修路征地，我家的{n}亩耕地被征收，补偿款到现在还没有发到手。",
        "村里搞拆迁，说好的安置房两年了还没交房，我们一家只能租房住。",
        "征收我家院子的补偿标准太低，和邻村差了一大截，要求重新评估。",
    ],
    "land_rights": [
        "我家和{name}家的地界一直说不清，土地证上的四至和实际不一样，要求确权。",
        "{village}那片地的权属有争议，两家都说是自己的，请镇里给个说法。",
        "承包地确权时把我家的地少登记了{n}亩，找了几次村委会都没解决。",
    ],
    "grassland": [
        "邻嘎查的牧户把网围栏往我家草场里拉了几十米，占了我们的放牧地。",
        "{name}家的羊群天天进我家草牧场，草都啃光了，说了也不听。",
        "两个嘎查的牧场边界有争议，夏季放牧时经常吵起来。",
    ],
    "land_contract": [
        "我家{n}亩地流转给了合作社，说好每年年底结流转费，今年到现在还没结。",
        "村里收回我家承包的草地另行发包，合同还没到期，我不同意。",
        "土地承包合同到期后续包的价格村里单方面涨了一倍。",
    ],
    "homestead": [
        "{name}家在宅基地上盖房，把房子往我家这边多盖了半米，挡住了出路。",
        "我申请宅基地三年了一直批不下来，一家{n}口挤在两间旧房屋里。",
        "兄弟分家时老房屋怎么分说不拢，{rel}的意思和我们不一样。",
    ],
    "collective_affairs": [
        "村里的集体收入这几年从来没公开过，村账让人看不明白。",
        "今年嘎查的分红没有给外嫁女，我们{n}户都没领到。",
        "村务公开栏半年没更新了，草场补贴怎么分的大家都不清楚。",
    ],
    "forest_rights": [
        "我家的林地被人砍了{n}棵树，派出所说要先确认林权。",
        "{village}的林权证上面积和实际对不上，申请更正一直没人管。",
        "邻居在我家林地边上种树，越种越往里。",
    ],
    "neighbor": [
        "邻居{name}家院子的排水一直往我家门口流，冬天结冰很危险。",
        "邻里之间为了一条通道吵了好几年，现在连门都出不去。",
        "楼上邻居每天半夜敲敲打打，说了好几次都不改。",
    ],
    "marriage_family": [
        "我{rel}年纪大了，几个子女都不愿意赡养，老人生活没有着落。",
        "离婚后对方一直不给孩子的抚养费，已经拖了{months}个月。",
        "{rel}喝了酒就动手打人，家暴好几年了，我想离开这个婚姻。",
    ],
    "labor_dispute": [
        "我在{company}干了三年，公司突然把我辞退了，也不给经济补偿。",
        "上个月在工地上受了工伤，公司不给认定，也不出医药费。",
        "单位长期让我们加班不给加班费，劳动合同也一直不签。",
    ],
    "wage_arrears": [
        "我们{n}个农民工在{company}的工地干了{months}个月，老板拖欠工资{money}元不给。",
        "包工头跑了，欠我们的工钱一直没人管，快过年了急着用钱。",
        "饭店老板欠薪两个月，我们去要，他说等有钱再说。",
    ],
    "personnel_dispute": [
        "我是镇上事业单位的职工，调动岗位后待遇一直没落实。",
        "招聘时说好给编制，干了{n}年还是临时人员。",
        "单位的人事处理决定不公平，我要求复核。",
    ],
    "social_insurance": [
        "我交了十五年养老保险，退休手续办了半年还没开始领。",
        "{rel}住院花了{money}元，医保报销比例比别人低，想问清楚原因。",
        "换了工作单位后社保关系转不过来，断缴了{months}个月。",
    ],
    "social_assistance": [
        "我家{rel}瘫痪在床，申请低保两次都没批下来。",
        "去年遭了灾，申请的困难补助到现在也没消息。",
        "家里突发变故，想申请临时救助，不知道找谁。",
    ],
    "veterans": [
        "我是退役军人，退伍时承诺的优抚待遇一直没有落实。",
        "{rel}是老军人，这几年的优抚金发放时断时续。",
        "退役后安排工作的事情拖了{n}年，找了好几个部门都推来推去。",
    ],
    "legal_aid": [
        "对方欠我钱不还，我想打官司没钱请律师，能不能申请法律援助？",
        "我是低保户，想请律师帮我打官司，听说可以申请法律援助。",
        "家里没钱，打官司没钱，想找政府帮忙。",
    ],
    "medical": [
        "{rel}在医院做手术后出现感染，医院说不是他们的责任。",
        "孩子发烧去卫生院，被误诊耽误了治疗，现在住进了旗医院。",
        "医疗费用清单里有很多我们没用过的药，要求医院说明。",
    ],
    "education": [
        "孩子到了入学年龄，学校说户口不在本地不能报名。",
        "学校的教师体罚学生，我家孩子现在不敢去上学。",
        "学生食堂的饭菜质量太差，家长们意见很大。",
    ],
    "consumer_contract": [
        "在镇上商家买的{product}三天就坏了，商家不给退也不给修。",
        "买到了假货{product}，找卖家理论对方不认账。",
        "和{company}签的装修合同，对方收了定金就不干了。",
    ],
    "property_housing": [
        "小区物业不作为，电梯坏了两个月没人修，物业费照收。",
        "分到的保障房漏水严重，怀疑房屋质量有问题。",
        "小区里的地下车库被物业改成了仓库出租。",
    ],
    "traffic_accident": [
        "我{rel}骑电动车被一辆货车撞了，对方只赔了一点医药费就不管了。",
        "上个月在国道上出了车祸，交警的事故认定我不服。",
        "交通事故已经过去半年了，对方保险公司一直不理赔。",
    ],
    "enterprise_community": [
        "附近{company}的运煤车一天到晚不停，粉尘大得窗户都不敢开。",
        "煤矿开采造成我们{village}地面塌陷，房子都裂了缝。",
        "村边的企业晚上偷排废水，河里的鱼都死了，污染太严重。",
        "矿区的噪音太大，老人孩子晚上都睡不着觉。",
    ],
}
# Texts no keyword of the reference pack matches: a person must triage them.
UNCLASSIFIED = [
    "有个情况想向领导反映一下，电话里说不清楚。",
    "我对镇上的一位干部处理问题的态度有意见。",
    "嘎查的路灯坏了一个冬天，晚上出门很不方便。",
    "希望在{village}修一个篮球场，年轻人没地方活动。",
    "建议把班车的时间往后调一个小时。",
]
# Texts that name two categories: the pack's priorities decide.
MIXED = [
    "我是农民工，劳动合同到期后老板不续签，欠的工资也不给。",  # wage_arrears over labor_dispute
    "退役军人安置房到现在还没分到。",  # veterans over land_expropriation
    "小区的房屋质量有问题，开发商说宅基地的手续也不全。",  # property_housing over homestead
    "医保报销时医院多收了钱。",  # social_insurance over medical
    "煤矿占了我家承包的草场，补偿款一分没给。",  # land_expropriation over land_contract / grassland
    "学校附近的企业排污，学生都被熏得头疼。",  # education over enterprise_community
]


def _category_names() -> dict[str, str]:
    """Code -> Chinese name of the reference pack's 22 categories, from its table (kept there only)."""
    tables = yaml.safe_load((_PACK / "tables.yaml").read_text(encoding="utf-8"))["tables"]
    return {code: row["name"] for code, row in tables["categories"]["rows"].items() if code != "unclassified"}


CATEGORY_NAMES = _category_names()
TITLES = ["反映", "求助", "投诉", "请求解决", "咨询", "情况反映"]
CHANNELS = ["VISIT", "LETTER", "PHONE", "ONLINE", "MOBILE", "AGENT_VISIT"]
INTENTS = ["PETITION", "SUGGESTION", "MEDIATION", "LITIGATION", "CONSULTATION", "LEGAL_AID", "REPORT"]
STAGES = ["CONSULT", "ASSESS", "MEDIATE", "ARBITRATE", "LITIGATE"]
LOCAL = timezone(timedelta(hours=8))
START = datetime(2026, 1, 5, 8, 0, tzinfo=LOCAL)


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        village=rng.choice(VILLAGES),
        township=rng.choice(list(TOWNSHIPS.values())),
        name=rng.choice(SURNAMES) + rng.choice(["某", "大哥", "家"]),
        rel=rng.choice(RELATIVES),
        n=rng.choice([2, 3, 5, 8, 12, 20, 36]),
        money=rng.choice(["3800", "1.2万", "4万", "15万", "26万"]),
        months=rng.choice([2, 3, 5, 7, 10]),
        company=rng.choice(COMPANIES),
        product=rng.choice(PRODUCTS),
    )


def _weighted(rng: random.Random, pairs: list[tuple[Any, float]]) -> Any:
    values, weights = zip(*pairs, strict=True)
    return rng.choices(values, weights=weights)[0]


def complaint(rng: random.Random, i: int) -> dict[str, Any]:
    """One complaint. The distribution is a plausible year of intake, with edge cases over-sampled."""
    kind = _weighted(rng, [("category", 0.82), ("unclassified", 0.07), ("mixed", 0.06), ("hint_only", 0.05)])
    c: dict[str, Any] = {"id": f"wsq-2026-{i:06d}"}
    category = ""
    if kind == "category":
        category = rng.choice(list(TEMPLATES))
        c["text"] = _fill(rng, rng.choice(TEMPLATES[category]))
    elif kind == "unclassified":
        c["text"] = _fill(rng, rng.choice(UNCLASSIFIED))
    elif kind == "mixed":
        c["text"] = rng.choice(MIXED)
    else:
        category = rng.choice(list(TEMPLATES))
    if rng.random() < 0.5:
        c["title"] = rng.choice(TITLES) + (rng.choice(["", "：", "一事"]))
    # category_hint: valid code, valid Chinese name, padded / upper-case code, or invalid
    if kind == "hint_only":
        c["category_hint"] = rng.choice([category, CATEGORY_NAMES[category], f"  {category.upper()} "])
    elif rng.random() < 0.08:
        c["category_hint"] = _weighted(
            rng,
            [
                (category or rng.choice(list(TEMPLATES)), 0.5),
                (CATEGORY_NAMES.get(category, "邻里纠纷"), 0.3),
                (rng.choice(["其他", "misc", "土地问题", "投诉"]), 0.2),
            ],
        )

    c["received_at"] = (START + timedelta(minutes=rng.randrange(0, 360 * 24 * 60))).isoformat()
    c["channel"] = rng.choice(CHANNELS)
    c["received_tier"] = _weighted(rng, [("VILLAGE", 0.55), ("TOWNSHIP", 0.3), ("BANNER", 0.1), (None, 0.05)])
    township = rng.choice(list(TOWNSHIPS))
    c["region"] = {
        "banner_code": "150626",
        "township_code": township,
        "village_code": f"{township}{rng.randrange(1, 20):03d}",
    }
    c["intent"] = _weighted(
        rng,
        [
            ("PETITION", 0.45),
            ("MEDIATION", 0.15),
            ("CONSULTATION", 0.12),
            ("LITIGATION", 0.07),
            ("LEGAL_AID", 0.06),
            ("SUGGESTION", 0.1),
            ("REPORT", 0.03),
            (None, 0.02),
        ],
    )
    # numbers: mostly small, with both sides of every threshold over-sampled
    c["people_involved"] = _weighted(
        rng,
        [
            (1, 0.6),
            (2, 0.12),
            (rng.choice([3, 4, 5, 9, 10, 11]), 0.12),
            (rng.choice([28, 29, 30, 31, 45, 120]), 0.05),
            (None, 0.11),
        ],
    )
    c["repeat_visits"] = _weighted(
        rng, [(0, 0.7), (1, 0.12), (2, 0.08), (3, 0.05), (rng.randrange(4, 9), 0.02), (None, 0.03)]
    )
    c["amount_yuan"] = _weighted(
        rng,
        [
            (None, 0.6),
            (float(rng.randrange(500, 90000, 100)), 0.3),
            (rng.choice([99999.0, 100000.0, 260000.0, 999999.0]), 0.07),
            (rng.choice([1000000.0, 3500000.0]), 0.03),
        ],
    )
    for flag, p in (
        ("cross_village", 0.08),
        ("cross_township", 0.04),
        ("vulnerable", 0.12),
        ("extreme_risk", 0.03),
        ("conflict_verbal", 0.06),
        ("escalation_intent", 0.04),
        ("sensitive_period", 0.05),
    ):
        if rng.random() < p:
            c[flag] = True
    c["public_opinion"] = _weighted(rng, [("NONE", 0.9), ("LOCAL", 0.07), ("VIRAL", 0.03)])
    # exclusions
    r = rng.random()
    if r < 0.03:
        c["procedure"] = rng.choice(
            ["LITIGATION_PENDING", "ARBITRATION_PENDING", "ADMIN_REVIEW_PENDING", "JUDGMENT_EFFECTIVE"]
        )
    elif r < 0.05:
        c["procedure"] = "REVIEW_TERMINATED"
        c["new_facts"] = rng.random() < 0.4
    if rng.random() < 0.03:
        c["existing_case_id"] = f"WS-{rng.randrange(2024, 2027)}-{rng.randrange(1, 9999):04d}"
    if rng.random() < 0.015:
        c["crime_involved"] = True
    # re-triage
    if rng.random() < 0.1:
        c["last_stage"] = rng.choice(STAGES)
        c["last_outcome"] = _weighted(rng, [("FAILED", 0.5), ("REFUSED", 0.35), ("RESOLVED", 0.15)])
    return {k: v for k, v in c.items() if v is not None}


def generate(count: int, seed: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(1, count + 1):
        yield complaint(rng, i)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261101)
    parser.add_argument(
        "--out", default="corpus/complaints.jsonl", help="file to write, or - for standard output"
    )
    args = parser.parse_args(argv)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
    with out:
        for c in generate(args.count, args.seed):
            out.write(json.dumps(c, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
