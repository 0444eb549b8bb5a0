"""Links by words alone need the two texts to share enough of all their words, not only that the shorter
one is "contained" in the longer: a short note of common characters is contained in any long complaint."""

from __future__ import annotations

from fenliu.matter import MatchSettings, MemoryStore
from fenliu.matter import signature as sig
from matter_helpers import GRASS, GRASS_AGAIN, sighting

# A land-taking note and a neighbour's long letter of the same village, by two people: not one matter.
SHORT = "我家地被征了钱到现在没给 谁管"
LONG = (
    "尊敬的村调解委员会、镇司法所：我叫雷改兰，住乌审召镇某村二组。我家和东边邻居刘某家前后院紧挨着，"
    "两家中间原来有一条一米二宽的小巷，是两家共用的，下雨时两家院里的水都顺着小巷流到村道的排水渠里，"
    "我家平时也从小巷去后面的菜地。2024年夏天，刘某家把小巷的出口用砖砌了一道墙，说小巷是他家的地方，"
    "不让我家走了。这样一来，我家去菜地要绕半个村子，更麻烦的是雨水排不出去，今年七月下了一场大雨，"
    "我家院子里的积水没过了脚踝，西屋的墙根都泡软了。我去和刘某商量，他说除非我家出一半的钱把小巷硬化了，"
    "否则就不拆墙。我家老伴有腿病，我们也拿不出这笔钱。"
)


def _linked(settings: MatchSettings, first: str, second: str) -> bool:
    store = MemoryStore(settings)
    a = store.record(sighting("a", first, settings, complainant={"phone": "13911110000"}))
    b = store.record(sighting("b", second, settings, complainant={"phone": "13922220000"}))
    return a.matter_id == b.matter_id


def test_a_short_note_contained_in_a_long_letter_is_no_link_by_words_alone() -> None:
    contained, jaccard = sig.resemblances(sig.signature(SHORT), sig.unpack(sig.signature(LONG)))
    assert contained[0] >= MatchSettings().content_similarity  # what containment alone would link
    assert jaccard[0] < MatchSettings().content_jaccard
    assert not _linked(MatchSettings(), LONG, SHORT)
    assert _linked(MatchSettings(content_jaccard=0.0), LONG, SHORT)


def test_a_relative_telling_the_same_matter_still_links_by_words() -> None:
    assert _linked(MatchSettings(), GRASS, GRASS_AGAIN)
