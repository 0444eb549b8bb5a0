"""A fixed, seeded corpus of realistic complaints for the benchmarks.

``generate(n, seed)`` returns ``n`` complaints in their JSON form (what ``fenliu.domain.model.complaint_from_dict``
and ``fenliu.serving.convert.complaint_to_proto`` take). The same ``n`` and ``seed`` always give the same
corpus, byte for byte, on every machine: it depends on nothing but this file and the category names
in the reference pack's table (``rules/wushen/tables.yaml``).

What it covers, and in what proportions (roughly what a banner-level intake sees):

* **Categories.** Every one of the reference pack's 22 categories has several phrasings written the
  way citizens write (keywords inside ordinary sentences, never alone). About 8% of complaints name
  no category at all (unclassified), and about 10% mix two categories, so that priorities decide.
* **Colours.** Most complaints are ordinary (one or two people, no money, first visit: BLUE); the rest
  carry crowds, money, repeat visits, public opinion, risk, escalation, sensitive periods and
  vulnerable complainants, including every threshold exactly (3, 5, 10, 29, 30 people; 1, 2, 3 visits;
  100,000 and 1,000,000 yuan), so YELLOW, RED and the vulnerable uplift all occur.
* **Exclusions and the funnel.** Pending litigation, arbitration and administrative review, effective
  judgments, three-level termination with and without new facts, duplicates (an existing case id),
  reports of officials, crimes; every intent; retriage after each stage with FAILED, REFUSED and
  RESOLVED outcomes.
* **Edge cases.** A category hint given as a code, as an upper-case or full-width code, as the Chinese
  name, with spaces, or naming nothing; a hint with no text; a title carrying the keyword; long texts
  (up to about 4,000 characters); full-width punctuation and Latin letters; people_involved 0 (unknown).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

_PACK = Path(__file__).resolve().parents[1] / "rules" / "wushen"

DEFAULT_SEED = 20261127

# Phrasings per category. Each holds at least one of the category's keywords in the reference pack.
PHRASES: dict[str, list[str]] = {
    "land_expropriation": [
        "旗里搞项目征地，占了我家三亩耕地，补偿款到现在还没发下来。",
        "我家的老房子去年被拆迁，说好的安置房到现在都没有着落。",
        "征收我们嘎查的草地时，补偿标准比邻嘎查低了一半。",
    ],
    "land_rights": [
        "这次土地确权，村里把我家那块地的四至登记错了，面积少了五亩。",
        "两家为一块地的权属吵了好几年，谁也拿不出土地证。",
        "确权的时候我在外地打工，回来发现地被登记到了别人名下。",
    ],
    "grassland": [
        "另一户牧民老是把羊群赶进我家草场放牧，网围栏也被弄坏了。",
        "嘎查重新划分草牧场，我家分到的牧场比原来少了一大块。",
        "禁牧期间有人夜里偷偷放牧，把草场啃得一片光。",
    ],
    "land_contract": [
        "我家二十亩地流转给了合作社，说好每年年底结流转费，今年到现在还没结。",
        "承包期还没到，村里就要收回我家的承包地。",
        "草牧场承包合同到期后，嘎查不按原来的约定续包。",
    ],
    "homestead": [
        "我在自家宅基地上盖房，村里有人说占了他家的地，不让我们动工。",
        "我家的房屋手续齐全，却被说成是违建。",
        "兄弟分家，为老宅基地怎么分一直谈不拢。",
    ],
    "collective_affairs": [
        "嘎查去年的集体收入一直没公开，各户的分红也没发。",
        "村务从来不公开，村账也不让我们看。",
        "嫁出去的女儿户口还在村里，却分不到分红。",
    ],
    "forest_rights": [
        "我家的林地被别人开荒种了庄稼，林权证上写得清清楚楚。",
        "村里把我家承包的林地又划给了别人造林。",
        "有人把我家地头的树砍了拉走卖钱。",
    ],
    "neighbor": [
        "邻居家的排水沟对着我家院子，一下雨院子里全是水。",
        "邻居在两家之间的通道上堆满了柴火，车都进不去。",
        "跟邻里为了院墙的事吵了好几次，差点动手。",
    ],
    "marriage_family": [
        "我父亲七十多岁了，三个儿子都不肯赡养，现在他一个人住。",
        "离婚的时候说好孩子的抚养费每月一千，他一分也没给过。",
        "丈夫喝了酒就打人，这样的家暴已经好几年了。",
    ],
    "labor_dispute": [
        "我在一家饭馆当厨师，被烫伤后饭馆不给报工伤，还把我辞退了。",
        "公司不跟我们签劳动合同，天天加班也没有加班费。",
        "干了五年，公司说辞退就辞退，一分补偿都不给。",
    ],
    "wage_arrears": [
        "我们几个农民工在镇上干了大半年活，包工头到现在还欠着工钱。",
        "工地拖欠我们三个月工资，老板电话也不接了。",
        "年底了，欠薪一直要不回来，孩子的学费都交不上。",
    ],
    "personnel_dispute": [
        "我在乡里的事业单位干了十年，说好的编制一直没解决。",
        "单位人事调动不按规定来，把我调到了最偏远的站所。",
        "事业单位改革以后，我的岗位被取消，也没有给安排。",
    ],
    "social_insurance": [
        "我交了十五年的养老保险，到退休却说缴费年限不够。",
        "在旗医院住院花了两万多，医保报销的比例比别人低。",
        "单位没给我交社保，现在看病全得自己掏钱。",
    ],
    "social_assistance": [
        "我家两口人都有病，申请低保两年了一直没批下来。",
        "冬天取暖没钱，申请的困难补助到现在还没有消息。",
        "去年遭了雪灾，说好的救助款只发了一半。",
    ],
    "veterans": [
        "我是退役军人，当年的优抚待遇到现在还没落实。",
        "我父亲是老退役军人，去世后的抚恤金一直没发。",
        "退役回乡以后，答应的优抚补助停发了两年。",
    ],
    "education": [
        "孩子到了入学年龄，学校说户口不在本地不收。",
        "学校里有几个学生老是欺负我家孩子，老师也不管。",
        "有教师在课外办补习班，逼着学生去报名。",
    ],
    "medical": [
        "我母亲在旗医院做手术后感染，医院说跟他们没关系。",
        "孩子发烧去看病被误诊，耽误了好几天。",
        "这次医疗事故的责任，医院一直推脱。",
    ],
    "consumer_contract": [
        "在镇上商家买的化肥是假货，庄稼都烧死了。",
        "跟装修公司签了合同，收了钱一直不开工。",
        "在网上消费买的农机，到手就坏，商家不给退。",
    ],
    "property_housing": [
        "小区物业天天收费，电梯坏了半年也不修。",
        "新买的保障房墙皮脱落，房屋质量太差。",
        "我们小区的物业把公共绿地圈起来做了停车场。",
    ],
    "traffic_accident": [
        "我骑摩托车被一辆货车撞了，对方到现在不赔医药费。",
        "去年的车祸定了对方全责，可赔偿款一直拖着不给。",
        "这起交通事故的保险理赔，保险公司一直不认。",
    ],
    "enterprise_community": [
        "村旁的煤矿天天放炮，粉尘把庄稼都盖住了。",
        "附近的企业往河里排污，污染得牲畜都不敢喝水。",
        "矿区的大车夜里一直跑，噪音吵得全村人睡不着。",
    ],
    "legal_aid": [
        "我想打官司，可是家里困难，想申请法律援助。",
        "对方请了律师，我不懂法，也请不起律师，打官司没钱。",
        "听说可以申请法律援助，想问一下要准备什么材料。",
    ],
}

# No keyword of the reference pack appears in these.
PLAIN = [
    "我反映的这件事情已经拖了很久了，一直没有人管。",
    "我们找过嘎查委员会好几次，每次都说再等等。",
    "希望领导重视这件事情，尽快给我们一个说法。",
    "家里老人身体不好，实在是耽误不起了。",
    "请政府帮忙协调处理，我们愿意配合调查。",
    "具体情况我可以当面再详细说明。",
    "去年秋天开始就这样了，今年越来越严重。",
    "苏木里的干部来看过一次，之后就没有消息了。",
    "我们全家都指望这个过日子，请尽快答复。",
]

UNCLASSIFIED = [
    "我想问问旗里今年的政策有什么变化。",
    "上次反映的事情一直没有回音，想了解一下进度。",
    "我们这里的路灯坏了很久，晚上出门很不方便。",
    "嘎查的自来水经常停，一停就是好几天。",
    "冬天的班车太少了，去旗里办事很不方便。",
]

TITLES = ["", "", "", "反映问题", "请求帮助", "紧急求助", "关于{}的问题"]


def _category_names() -> dict[str, str]:
    """Code -> Chinese name of the reference pack's 22 categories, from its table (kept there only)."""
    tables = yaml.safe_load((_PACK / "tables.yaml").read_text(encoding="utf-8"))["tables"]
    return {code: row["name"] for code, row in tables["categories"]["rows"].items() if code != "unclassified"}


CATEGORY_NAMES = _category_names()

CHANNELS = ["VISIT", "LETTER", "PHONE", "ONLINE", "MOBILE", "AGENT_VISIT"]
INTENTS = ["PETITION", "SUGGESTION", "MEDIATION", "LITIGATION", "CONSULTATION", "LEGAL_AID", "REPORT"]
TIERS = ["VILLAGE", "TOWNSHIP", "BANNER"]
STAGES = ["CONSULT", "ASSESS", "MEDIATE", "ARBITRATE", "LITIGATE"]
OUTCOMES = ["RESOLVED", "FAILED", "REFUSED"]
PROCEDURES = [
    "LITIGATION_PENDING",
    "ARBITRATION_PENDING",
    "ADMIN_REVIEW_PENDING",
    "JUDGMENT_EFFECTIVE",
    "REVIEW_TERMINATED",
]
TOWNSHIPS = ["150626100", "150626101", "150626102", "150626103", "150626200", "150626201"]
SURNAMES = "王李张刘陈杨赵黄周吴巴乌其额"
LOCAL = timezone(timedelta(hours=8))
BASE_TIME = datetime(2026, 1, 5, 8, 0, tzinfo=LOCAL)


def _to_fullwidth(s: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in s)


def _text(rng: random.Random) -> tuple[str, str]:
    """(text, the category its main phrase came from, or "" for none)."""
    roll = rng.random()
    parts: list[str] = []
    if roll < 0.08:
        cat = ""
        parts.append(rng.choice(UNCLASSIFIED))
    else:
        cat = rng.choice(list(PHRASES))
        parts.append(rng.choice(PHRASES[cat]))
        if roll > 0.90:  # two matters in one complaint: priorities decide
            other = rng.choice([c for c in PHRASES if c != cat])
            parts.insert(rng.randrange(2), rng.choice(PHRASES[other]))
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(PLAIN))
    text = "".join(parts)
    r = rng.random()
    if r < 0.02:  # long: a whole letter
        text = "".join(rng.choice(PLAIN) for _ in range(rng.randint(60, 200))) + text
    elif r < 0.04:  # full-width punctuation and Latin letters, as some phones type
        text = _to_fullwidth("ABC ") + text.replace("，", ",") + _to_fullwidth(" (2026)")
    return text, cat


def _count(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.55:
        return 1
    if r < 0.62:
        return 0  # unknown: counted as 1
    if r < 0.75:
        return 2
    return rng.choice((3, 4, 5, 6, 9, 10, 11, 15, 29, 30, 31, 45, 80, 200))


def _amount(rng: random.Random) -> float | None:
    r = rng.random()
    if r < 0.60:
        return None
    if r < 0.85:
        return float(rng.randrange(500, 99_000, 500))
    return rng.choice((99_999.5, 100_000.0, 150_000.0, 480_000.0, 999_999.0, 1_000_000.0, 2_500_000.0))


def complaint(i: int, rng: random.Random) -> dict[str, Any]:
    """The i-th complaint of a corpus (drawn from ``rng``)."""
    text, cat = _text(rng)
    c: dict[str, Any] = {
        "id": f"bench-{i:07d}",
        "received_at": (BASE_TIME + timedelta(minutes=rng.randrange(0, 525_600))).isoformat(),
        "channel": rng.choice(CHANNELS),
        "text": text,
        "region": {
            "banner_code": "150626",
            "township_code": rng.choice(TOWNSHIPS),
            "village_code": f"{rng.randrange(1, 80):03d}",
        },
        "complainant": {"name": rng.choice(SURNAMES) + "某", "phone": f"13{rng.randrange(10**8, 10**9)}"},
    }
    title = rng.choice(TITLES)
    if title:
        c["title"] = title.format(CATEGORY_NAMES.get(cat, "村里"))
    if rng.random() < 0.45:
        c["intent"] = rng.choices(INTENTS, weights=(40, 6, 14, 8, 10, 5, 3))[0]
    if rng.random() < 0.5:
        c["received_tier"] = rng.choice(TIERS)

    # Hints: a code, a Chinese name, odd spellings, a hint that names nothing, a hint with no text.
    h = rng.random()
    if h < 0.10:
        code = rng.choice(list(CATEGORY_NAMES))
        c["category_hint"] = rng.choice(
            (code, code.upper(), _to_fullwidth(code), CATEGORY_NAMES[code], f"  {CATEGORY_NAMES[code]} ")
        )
        if rng.random() < 0.25:
            c["text"] = ""
    elif h < 0.12:
        c["category_hint"] = rng.choice(("其他", "not_a_category", "土地问题", "unknown"))

    # Severity: most complaints are ordinary.
    severe = rng.random() < 0.40
    people = _count(rng) if severe else rng.choice((1, 1, 1, 0, 2))
    c["people_involved"] = people
    if severe:
        amount = _amount(rng)
        if amount is not None:
            c["amount_yuan"] = amount
        c["repeat_visits"] = rng.choices((0, 1, 2, 3, 4, 7), weights=(50, 15, 10, 10, 5, 3))[0]
        for flag, p in (
            ("vulnerable", 0.20),
            ("extreme_risk", 0.05),
            ("conflict_verbal", 0.15),
            ("escalation_intent", 0.05),
            ("sensitive_period", 0.10),
            ("cross_village", 0.12),
            ("cross_township", 0.06),
        ):
            if rng.random() < p:
                c[flag] = True
        po = rng.random()
        if po < 0.10:
            c["public_opinion"] = "LOCAL"
        elif po < 0.14:
            c["public_opinion"] = "VIRAL"
    elif rng.random() < 0.10:
        c["vulnerable"] = True

    # Exclusions: about one in eight.
    x = rng.random()
    if x < 0.06:
        c["procedure"] = rng.choice(PROCEDURES)
        if c["procedure"] == "REVIEW_TERMINATED" and rng.random() < 0.4:
            c["new_facts"] = True
    elif x < 0.09:
        c["existing_case_id"] = f"WS-2026-{rng.randrange(1, 99999):05d}"
    elif x < 0.105:
        c["intent"] = "REPORT"
    elif x < 0.12:
        c["crime_involved"] = True

    # Retriage: one in six comes back after an earlier stage.
    if rng.random() < 0.16:
        c["last_stage"] = rng.choice(STAGES)
        c["last_outcome"] = rng.choices(OUTCOMES, weights=(2, 5, 3))[0]
    return c


def generate(n: int, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """``n`` complaints, always the same ones for the same ``n`` and ``seed``."""
    rng = random.Random(seed)
    return [complaint(i, rng) for i in range(n)]


def categories_in(corpus: list[dict[str, Any]]) -> set[str]:
    """The categories whose phrasing the corpus uses (a coverage check for tests)."""
    found: set[str] = set()
    for c in corpus:
        for cat, phrases in PHRASES.items():
            if any(p in c.get("text", "") for p in phrases):
                found.add(cat)
    return found
