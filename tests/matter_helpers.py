"""Complaints, sightings and stores for the matter-store tests, and the worker the concurrency tests
start as separate processes."""

from __future__ import annotations

from typing import Any

from fenliu.domain import model
from fenliu.matter import MatchSettings, Sighting, open_store, sighting_from_complaint

KEY = b"test-key-of-the-matter-store-32b"
TWP = "150626104"
VIL = TWP + "001"


def complaint(cid: str, text: str, **kw: Any) -> model.Complaint:
    d: dict[str, Any] = {
        "id": cid,
        "text": text,
        "channel": "VISIT",
        "received_tier": "VILLAGE",
        "region": {"banner_code": "150626", "township_code": TWP, "village_code": VIL},
        "received_at": "2026-03-01T09:00:00+08:00",
    }
    d.update(kw)
    return model.complaint_from_dict(d)


def sighting(cid: str, text: str, settings: MatchSettings | None = None, **kw: Any) -> Sighting:
    return sighting_from_complaint(complaint(cid, text, **kw), key=KEY, settings=settings)


GRASS = "我家草场的网围栏被邻村的人拆了一百多米，牛羊跑出去吃了别人家的草，找村里也没人管。"
GRASS_AGAIN = "邻村的人把我家草场网围栏拆了一百多米，牛羊跑出去了，村里一直没人管这个事。"
WAGE = "在城里工地干了半年活，包工头欠我们八个人的工资四万多块钱，过年前一直拖着不给。"


def concurrent_worker(url: str, barrier: Any, prefix: str, rounds: int, person: bool, results: Any) -> None:
    """Record one complaint per round, all processes at the same moment; put (prefix, matter ids)."""
    store = open_store(url)
    out = []
    try:
        for r in range(rounds):
            who = {"complainant": {"phone": f"1390000{r:04d}"}} if person else {}
            text = f"第{r}号：{GRASS}" if person else f"{GRASS}（第{r}户{prefix}）"
            vil = f"{TWP}{r % 900 + 100:03d}"
            s = sighting(
                f"{prefix}-{r}",
                text,
                channel="PHONE" if prefix == "a" else "ONLINE",
                region={"township_code": f"15{r:07d}", "village_code": vil},
                **who,
            )
            barrier.wait(timeout=30)
            out.append(store.record(s).matter_id)
    finally:
        store.close()
    results.put((prefix, out))
