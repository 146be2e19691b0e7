"""Customer matching: keys, stripping, one wrong character, ranking, and no false hits."""

from __future__ import annotations

import pytest

from bot.matching import CustomerMatcher, derived_keys, is_ambiguous, normalize, resolve
from simulator.seed import CUSTOMERS

ROWS = [{"id": i, "name": name, "aliases": list(aliases), "short_name": aliases[0],
         "region": region, "owner_id": 100 + i}
        for i, (name, aliases, region, *_rest) in enumerate(CUSTOMERS, 1)]
ID = {row["name"]: row["id"] for row in ROWS}


@pytest.fixture(scope="module")
def matcher() -> CustomerMatcher:
    return CustomerMatcher.from_rows(ROWS)


def top(matcher, text, **kw):
    found = matcher.find(text, **kw)
    return found[0] if found else None


def test_normalize():
    assert normalize(" 华东 精密（上海）Co., Ltd. ") == "华东精密上海coltd"
    assert normalize("ＡＢＣ") == "abc"  # full-width folded


def test_derived_keys_strip_suffix_and_region():
    keys = dict(derived_keys("上海浦江机电设备有限公司", "华东区"))
    assert "浦江机电设备" in keys and "上海浦江机电设备" in keys and "浦江机电" in keys
    keys = dict(derived_keys("苏州工业园区恒信电子有限公司"))
    assert "恒信电子" in keys  # city and zone stripped
    assert dict(derived_keys("南京金陵化工集团")).get("金陵化工") == "core"
    # a core that starts with a generic word is not a key (华东精密零部件 → 精密零部件)
    assert "精密零部件" not in dict(derived_keys("华东精密零部件有限公司", "华东区"))


@pytest.mark.parametrize("text,name", [
    ("今天拜访了华东精密零部件有限公司", "华东精密零部件有限公司"),  # full name
    ("下午去浦江开会", "上海浦江机电设备有限公司"),  # alias
    ("和金陵化工谈了防爆设备", "南京金陵化工集团"),  # short name
    ("杭州西子智能科技的孙女士", "杭州西子智能科技有限公司"),
    ("恒信电子有限公司在园区", "苏州工业园区恒信电子有限公司"),
    ("鹭岛医疗器械那边", "厦门鹭岛医疗器械有限公司"),
])
def test_seeded_customers(matcher, text, name):
    c = top(matcher, text)
    assert c is not None and c.name == name, matcher.find(text)
    assert resolve(matcher.find(text)) == c


@pytest.mark.parametrize("text,kind", [
    ("上海明德光学仪器股份有限公司", "name"),
    ("明德光学仪器的报价", "core"),  # region and suffix stripped
    ("上海明德光学仪器那边", "core"),  # suffix stripped, region kept
    ("明德光学下周签", "short"),
    ("老明德那边", "alias"),
])
def test_key_kinds_without_aliases_in_the_way(text, kind):
    m = CustomerMatcher.from_rows([{"id": 9, "name": "上海明德光学仪器股份有限公司",
                                    "short_name": "明德光学", "aliases": ["老明德"]}])
    c = top(m, text)
    assert c is not None and c.customer_id == 9 and c.kind == kind, m.find(text)


@pytest.mark.parametrize("text,name", [
    ("今天去了华东精蜜", "华东精密零部件有限公司"),  # speech-to-text homophone
    ("恒信电了的钱工", "苏州工业园区恒信电子有限公司"),  # OCR slip
    ("松湖精土制造", "东莞松湖精工制造有限公司"),
    ("上海浦江机电设备有限公囗", "上海浦江机电设备有限公司"),  # the slip in the suffix
])
def test_one_wrong_character(matcher, text, name):
    c = top(matcher, text)
    assert c is not None and c.name == name, matcher.find(text)
    if "公囗" not in text:
        assert c.kind.endswith("~") and c.score < 0.9


def test_two_wrong_characters_do_not_match(matcher):
    assert matcher.find("华冬精土") == []
    # … unless both sound the same (issue 16): then only as a phonetic hit to confirm
    assert CustomerMatcher.from_rows(ROWS, phonetic=False).find("华冬精蜜") == []
    c = matcher.find("华冬精蜜")[0]
    assert c.name == "华东精密零部件有限公司" and c.kind == "alias~sound" and c.confirm


def test_full_name_beats_alias_and_fuzzy(matcher):
    exact = top(matcher, "华东精密零部件有限公司")
    alias = top(matcher, "华东精密")
    fuzzy = top(matcher, "华东精蜜")
    assert exact.score > alias.score > fuzzy.score


def test_several_customers_are_ranked_and_ambiguous(matcher):
    found = matcher.find("上午恒信电子，下午金陵化工")
    assert {c.name for c in found} == {"苏州工业园区恒信电子有限公司", "南京金陵化工集团"}
    assert is_ambiguous(found) and resolve(found) is None
    # the full name outranks an alias elsewhere in the text: not ambiguous
    found = matcher.find("南京金陵化工集团，顺便提了一句西子")
    assert found[0].name == "南京金陵化工集团" and not is_ambiguous(found)


def test_shared_alias_is_ambiguous_and_owner_breaks_tie():
    rows = [{"id": 1, "name": "上海华光电子有限公司", "aliases": ["华光"], "owner_id": 7},
            {"id": 2, "name": "深圳华光科技有限公司", "aliases": ["华光"], "owner_id": 8}]
    m = CustomerMatcher.from_rows(rows)
    found = m.find("华光今天来电")
    assert {c.customer_id for c in found} == {1, 2} and is_ambiguous(found)
    assert m.find("华光今天来电", owner_id=8)[0].customer_id == 2


def test_more_mentions_rank_higher(matcher):
    found = matcher.find("金陵化工报价，恒信电子也问了，金陵化工下周签")
    assert found[0].name == "南京金陵化工集团"


@pytest.mark.parametrize("text", [
    "明天开会讨论科技创新和精密制造",
    "公司集团有限公司股份",
    "这个设备的电子元件和物流费用",
    "新能源汽车行业发展很快",
    "今天拜访了一个新客户，聊得不错",
    "华东区本月业绩",
    "",
    "ok",
])
def test_no_false_positive_on_common_words(matcher, text):
    assert matcher.find(text) == [], matcher.find(text)


def test_contained_name_of_another_customer_is_dropped():
    rows = [{"id": 1, "name": "华光电子有限公司"}, {"id": 2, "name": "上海华光电子设备有限公司"}]
    m = CustomerMatcher.from_rows(rows)
    found = m.find("上海华光电子设备有限公司")
    assert [c.customer_id for c in found] == [2]


def test_from_rows_accepts_objects(matcher):
    class Row:
        id = 5
        name = "宁波港城物流有限公司"
        aliases = ("港城物流",)

    m = CustomerMatcher.from_rows([Row()])
    assert len(m) == 1 and m.find("港城物流的叉车")[0].customer_id == 5
