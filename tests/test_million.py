"""One million complaints in one process: memory stays flat and no decision is confused with another.

Every complaint runs through durable_rules (no memoization). Complaints are generated from a few
parameters; the plain interpreter decides each parameter combination once, and every one of the
million engine decisions must equal the answer for its own complaint and carry its own id.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fenliu import Decider, Pack, complaint_from_dict, load_pack

N = int(os.environ.get("FENLIU_MILLION", "1000000"))
TEXTS = [
    "拖欠农民工工资三个月",
    "邻居家排水淹了院子",
    "草场被占放牧受阻",
    "学校乱收费",
    "离婚后孩子抚养费",
    "煤矿粉尘污染",
    "医院误诊",
    "低保被取消",
    "退役军人优抚待遇",
    "交通事故赔偿",
    "说不清楚的事情",
]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


#: The reference pack as it classified by keyword rules, without the text model: what this test holds to
#: account is the engine over a million facts (no id confused, flat memory), not the reading of words,
#: and the model's cost per complaint would only make it longer.
KEYWORDS = Path(__file__).parent / "packs" / "keywords"


@pytest.mark.slow
def test_million_decisions_flat_memory_and_no_confusion() -> None:
    pack: Pack = load_pack(KEYWORDS)
    decider = Decider(pack, backend="durable", memoize=False)
    python_decider = Decider(pack, backend="python", memoize=False)
    expected: dict[tuple[int, int, bool, int], object] = {}
    samples: list[float] = []
    wrong = 0
    for i in range(N):
        params = (i % len(TEXTS), (i // 7) % 40, i % 5 == 0, (i // 3) % 4)
        t, people, vulnerable, repeats = params
        c = complaint_from_dict(
            {
                "id": f"complaint-{i}",
                "text": TEXTS[t],
                "people_involved": people,
                "vulnerable": vulnerable,
                "repeat_visits": repeats,
            }
        )
        d = decider.decide(c)
        if params not in expected:
            expected[params] = python_decider.outcome(c)
        if d.complaint_id != c.id or d.outcome != expected[params]:
            wrong += 1
        if i % 100_000 == 0:
            samples.append(_rss_mb())
    samples.append(_rss_mb())
    assert wrong == 0
    assert decider.fallbacks == 0
    assert len(expected) > 1000  # many distinct answers, so a mix-up would show
    # After warm-up (the first 200k), resident memory must not grow by more than 8 MB.
    if len(samples) > 3:
        assert max(samples[2:]) - samples[2] < 8, samples
