"""Customer matching by sound (issue 16): pinyin, initials, English renderings and homophones
of the seeded names; character-exact hits still win; ordinary chat names nobody; the speech
model's hot words stay the customers' own names."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.matching import PHONETIC_CAP, CustomerMatcher, MatcherCache
from simulator.seed import CUSTOMERS, seed
from storage.db import async_engine

ROWS = [{"id": i, "name": name, "aliases": list(aliases), "short_name": aliases[0],
         "region": region, "owner_id": 100 + i}
        for i, (name, aliases, region, *_rest) in enumerate(CUSTOMERS, 1)]
ROWS += [{"id": 50, "name": "昆明滇池茶业有限公司", "aliases": [], "region": "西南区"},
         {"id": 51, "name": "重庆长江物流有限公司", "aliases": [], "region": "西南区"}]
NAME = {row["id"]: row["name"] for row in ROWS}


@pytest.fixture(scope="module")
def matcher() -> CustomerMatcher:
    return CustomerMatcher.from_rows(ROWS)


@pytest.fixture(scope="module")
def chars_only() -> CustomerMatcher:
    return CustomerMatcher.from_rows(ROWS, phonetic=False)


def top(m: CustomerMatcher, text: str):
    found = m.find(text)
    return found[0] if found else None


@pytest.mark.parametrize("text,name", [
    ("huadong jingmi", "华东精密零部件有限公司"),
    ("今天去了Hua Dong Jing Mi，周工在", "华东精密零部件有限公司"),
    ("HuaDongJingMi的报价", "华东精密零部件有限公司"),
    ("huadongjingmi", "华东精密零部件有限公司"),
    ("Jinling Huagong", "南京金陵化工集团"),
    ("nan jing jin ling hua gong ji tuan", "南京金陵化工集团"),
    ("Pujiang Jidian Shebei", "上海浦江机电设备有限公司"),
    ("Chongqing Changjiang Wuliu", "重庆长江物流有限公司"),  # heteronyms read as a phrase
    ("Lüdao Yiliao", "厦门鹭岛医疗器械有限公司"),  # lù written with ü, folded
])
def test_pinyin_renderings(matcher, chars_only, text, name):
    c = top(matcher, text)
    assert c is not None and c.name == name, matcher.find(text)
    assert c.kind.endswith("~pinyin") and c.confirm and c.score <= PHONETIC_CAP
    assert chars_only.find(text) == []  # only the phonetic layer finds it


@pytest.mark.parametrize("text,name", [
    ("Kunming Dianchi Tea", "昆明滇池茶业有限公司"),
    ("visited Dianchi Tea Co., Ltd. today", "昆明滇池茶业有限公司"),
    ("Nanjing Jinling Chemical Group", "南京金陵化工集团"),
    ("Jinling Chemical", "南京金陵化工集团"),
    ("Ningbo Gangcheng Logistics", "宁波港城物流有限公司"),
    ("Hengxin Electronics的钱工", "苏州工业园区恒信电子有限公司"),
    ("Songhu Precision Manufacturing", "东莞松湖精工制造有限公司"),
    ("Zhujiang Foods", "广州珠江食品有限公司"),
    ("Xizi Intelligent Technology", "杭州西子智能科技有限公司"),
    ("Xizi Zhineng Technology", "杭州西子智能科技有限公司"),  # half pinyin, half English
    ("Ludao Medical Devices", "厦门鹭岛医疗器械有限公司"),
    ("Shunde Appliances Parts Factory", "佛山顺德家电配件厂"),
    ("Hengqin New Energy", "珠海横琴新能源有限公司"),
])
def test_english_renderings(matcher, chars_only, text, name):
    c = top(matcher, text)
    assert c is not None and c.name == name, matcher.find(text)
    assert c.kind.endswith("~pinyin") and c.confirm
    assert chars_only.find(text) == []


def test_initials_only_in_capitals_unambiguous_and_long_enough(matcher):
    c = top(matcher, "HDJM的周工")
    assert c is not None and c.name == "华东精密零部件有限公司" and c.kind == "alias~initials"
    assert c.score < top(matcher, "huadong jingmi").score  # weaker than the spelled name
    assert top(matcher, "JLHG").name == "南京金陵化工集团"
    assert matcher.find("hdjm") == []  # a lower-case word is a word, not initials
    assert matcher.find("HDJ") == []  # 3 letters: too short
    # two customers with the same initials: neither is named
    m = CustomerMatcher.from_rows([{"id": 1, "name": "华东精密有限公司", "aliases": ["华东精密"]},
                                   {"id": 2, "name": "恒达机械有限公司", "aliases": ["恒达精密"]}])
    assert m.find("HDJM") == []
    assert top(m, "Hengda Precision").customer_id == 2


@pytest.mark.parametrize("text,name", [
    ("去了花东精米", "华东精密零部件有限公司"),  # three characters differ, same syllables
    ("今陵华工的冯总", "南京金陵化工集团"),
    ("横心电子那边", "苏州工业园区恒信电子有限公司"),
    ("滇驰茶叶的报价", "昆明滇池茶业有限公司"),
    ("鹭岛一聊器械", "厦门鹭岛医疗器械有限公司"),
])
def test_homophones(matcher, chars_only, text, name):
    c = top(matcher, text)
    assert c is not None and c.name == name, matcher.find(text)
    assert c.confirm and c.score <= PHONETIC_CAP
    assert chars_only.find(text) == [] or top(chars_only, text).name == name


def test_one_homophone_is_still_a_one_wrong_character_hit(matcher, chars_only):
    # the old path already finds it; the sound of the same window adds a little
    new, old = top(matcher, "今天去了华东精蜜"), top(chars_only, "今天去了华东精蜜")
    assert new.name == old.name == "华东精密零部件有限公司"
    assert new.kind == old.kind == "alias~" and new.score > old.score


def test_three_syllables_need_a_shared_character():
    m = CustomerMatcher.from_rows([{"id": 1, "name": "宏达信有限公司", "aliases": ["宏达信"]}])
    assert top(m, "洪达信来电").customer_id == 1  # one homophone in a 3-syllable key
    assert m.find("红大心来电") == []  # every character differs: too weak
    assert m.find("hongdaxin") != []  # spelled out it is the name itself


def test_exact_characters_win_over_sound(matcher):
    rows = [{"id": 1, "name": "华东精密零部件有限公司", "aliases": ["华东精密"]},
            {"id": 2, "name": "花东精米贸易有限公司", "aliases": ["花东精米"]}]
    m = CustomerMatcher.from_rows(rows)
    assert [c.customer_id for c in m.find("华东精密来电")] == [1]
    assert [c.customer_id for c in m.find("花东精米来电")] == [2]
    both = m.find("华东精密和huadong jingmi")
    assert both[0].customer_id == 1 and both[0].kind == "alias"
    # the weakest exact hit (a 2-character alias) still outscores every phonetic one
    weak = top(CustomerMatcher.from_rows([{"id": 3, "name": "西子有限公司", "aliases": ["西子"]}]),
               "西子")
    assert weak.score > PHONETIC_CAP >= max(c.score for c in m.find("huadong jingmi"))


def test_exact_names_rank_as_before(matcher, chars_only):
    """Every seeded name, alias and short name: the same top-1, kind and score as the
    characters-only matcher."""
    for row in ROWS:
        for said in [row["name"], *row["aliases"], row.get("short_name") or ""]:
            if not said:
                continue
            text = f"今天拜访了{said}，聊得不错"
            new, old = top(matcher, text), top(chars_only, text)
            assert new is not None and (new.customer_id, new.kind, new.score) == (
                old.customer_id, old.kind, old.score), (text, matcher.find(text))
            assert not new.confirm


CHAT = [
    "明天开会讨论科技创新和精密制造", "今天天气不错，下午开会讨论季度目标",
    "报销单已经提交了，麻烦审批一下", "周五团建，大家记得报名", "这个设备的电子元件和物流费用",
    "新能源汽车行业发展很快，机会很多", "今天拜访了一个新客户，聊得不错", "华东区本月业绩",
    "ok", "I will send the PPT and the KPI sheet tomorrow ASAP",
    "Please check the precision technology roadmap", "Technology Co., Ltd.",
    "ni hao, ming tian jian", "jingmi", "Logistics and food safety review",
    "new energy vehicles are growing fast", "HTTP JSON API", "zhongguo jishu fazhan",
    "shi chang bu de tong shi", "我们的市场部同事明天到", "经济发展很快", "北京上海广州深圳",
]


@pytest.fixture(scope="module")
def bench_matcher() -> CustomerMatcher:
    """5,000 customers from the bench's generator, plus the seeded ones."""
    path = Path(__file__).resolve().parents[2] / "bench" / "matching.py"
    spec = importlib.util.spec_from_file_location("bench_matching", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.generate(5000)
    return CustomerMatcher.from_rows(rows + [{**r, "id": 10_000 + r["id"]} for r in ROWS])


@pytest.mark.parametrize("text", CHAT)
def test_ordinary_chat_names_nobody(matcher, bench_matcher, text):
    assert matcher.find(text) == [], matcher.find(text)
    found = [c for c in bench_matcher.find(text) if c.kind.endswith(("~sound", "~pinyin",
                                                                     "~initials"))]
    assert found == [], found


async def test_hot_words_stay_the_customers_own_names(db_url):
    """The speech model's prompt words: the rep's customers' short names, in characters; the
    phonetic matcher built on the same database adds nothing to them."""
    from handlers.media import hot_words_for
    from storage.models import Customer, User

    seed(db_url, {"wecom": "corp1"})
    engine = async_engine(db_url)
    try:
        async with AsyncSession(engine) as s:
            user = (await s.exec(select(User).where(User.name == "张三"))).one()
            before = await hot_words_for(s, user.id)
            matcher = await MatcherCache().get(s)
            after = await hot_words_for(s, user.id)
            own = (await s.exec(select(Customer.short_name, Customer.name)
                                .where(Customer.owner_id == user.id))).all()
    finally:
        await engine.dispose()
    assert after == before
    assert sorted(before) == sorted(short or name for short, name in own) and before
    assert all("\u4e00" <= ch <= "\u9fff" for w in before for ch in w)  # no pinyin, no initials
    for word in before:  # and the matcher still finds each of them by its characters
        assert not top(matcher, word).confirm
