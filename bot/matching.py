"""Find the customers a piece of text names: full name, alias, short name or stripped core.

Pure and platform-neutral: the sync handler, the voice and photo pipelines and the CLI share
it. Keys are normalised (NFKC, lower case, no spaces or punctuation). Each customer gets:

- its full name, aliases and short name (exact keys);
- derived cores: the name without legal suffixes (有限公司, 股份, 集团, 科技 …) and without a
  leading region (上海, 华东, 苏州工业园区 …), e.g. 上海浦江机电设备有限公司 → 浦江机电设备;
- for keys of 4+ characters, one-substitution tolerance (OCR / speech-to-text slips): every
  key is indexed once per position with that position blanked, so a window of the text
  matches if it equals a key except in one place.

Matching slides windows of each indexed length over the text and looks them up in hash maps
(the same O(n·|lengths|) work an Aho-Corasick automaton saves only on very long texts, but
with far less memory at 100k customers); a 2-character prefix set skips most positions for
exact keys. Generic words (科技, 电子, 公司 …) are never keys, and derived keys need 3+
characters, so ordinary chat does not name customers by accident.

Phonetic layer (``bot.matching_phonetic``, on unless ``phonetic=False``): the same keys found
by sound: homophones (华东精蜜), pinyin ("huadong jingmi"), English renderings ("Kunming
Dianchi Tea") and initials ("HDJM"). Such hits score below every character-exact hit (at most
``PHONETIC_CAP``) and say how they matched in ``kind`` (``~sound``, ``~pinyin``,
``~initials``); ``Candidate.confirm`` is true for them and for one-wrong-character hits, so a
caller can ask the rep to confirm.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Longest first: stripping is repeated until nothing changes.
LEGAL_SUFFIXES = (
    "股份有限公司", "有限责任公司", "集团有限公司", "集团股份", "有限公司", "股份公司",
    "分公司", "总公司", "公司", "集团", "股份", "co.,ltd.", "co.,ltd", "co.ltd", "ltd.",
    "ltd", "inc.", "inc", "corp.", "corp", "llc", "gmbh",
)
# Industry words dropped once from the end after the legal suffix (a second, weaker core).
TRADE_SUFFIXES = (
    "科技", "技术", "电子", "设备", "机电", "制造", "工业", "实业", "贸易", "物流", "食品",
    "医疗器械", "器械", "医疗", "化工", "新能源", "能源", "配件厂", "厂", "智能", "精工",
)
REGIONS = (
    # macro regions
    "华东", "华南", "华北", "华中", "华西", "西南", "西北", "东北",
    # provinces and big cities (with and without 省/市)
    "北京", "上海", "天津", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江",
    "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州",
    "云南", "陕西", "甘肃", "青海", "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港",
    "澳门", "深圳", "广州", "杭州", "南京", "苏州", "无锡", "宁波", "厦门", "青岛", "大连",
    "武汉", "成都", "西安", "长沙", "郑州", "济南", "合肥", "福州", "东莞", "佛山", "珠海",
    "常州", "温州", "绍兴", "嘉兴", "昆山", "中山", "惠州", "沈阳", "哈尔滨", "长春", "石家庄",
    "太原", "南昌", "南宁", "昆明", "贵阳", "兰州", "乌鲁木齐", "烟台", "泉州", "徐州",
)
REGION_TAILS = ("省", "市", "区", "县")
ZONES = ("工业园区", "高新技术开发区", "经济技术开发区", "经济开发区", "高新区", "开发区", "新区",
         "自贸区")
# Words that must never identify a customer on their own.
GENERIC = frozenset({
    "公司", "集团", "科技", "技术", "电子", "设备", "机电", "制造", "工业", "实业", "贸易",
    "物流", "食品", "医疗", "化工", "能源", "新能源", "智能", "精密", "创新", "发展", "国际",
    "中国", "客户", "项目", "合同", "今天", "明天", "拜访", "跟进", "有限", "股份", "精工",
    "电器", "家电", "配件", "工厂", "中心", "服务", "管理", "信息", "网络", "软件", "系统",
})

MIN_EXACT = 2  # explicit aliases may be 2 characters (西子, 浦江)
MIN_DERIVED = 3  # derived cores need 3+
MIN_FUZZY = 4  # one wrong character tolerated from 4 characters on
MAX_FUZZY = 8
MIN_CORE2 = 4  # a brand without its trade word (西子智能) is only a key from 4 characters

# Score of a hit by the kind of key (then scaled by length and fuzziness).
KIND_SCORE = {"name": 1.0, "alias": 0.92, "short": 0.92, "core": 0.92, "core2": 0.84}
FUZZY_FACTOR = 0.8
# phonetic hits (modes 2–4 of bot.matching_phonetic): factor, kind suffix; capped below the
# weakest exact hit (a 2-character alias, 0.92 × 0.7)
PHONETIC = {2: (0.6, "~sound"), 3: (0.6, "~pinyin"), 4: (0.45, "~initials")}
PHONETIC_CAP = 0.64
PHONETIC_KINDS = tuple(suffix for _f, suffix in PHONETIC.values())
OWNER_BONUS = 0.03
REPEAT_BONUS = 0.02
AMBIGUITY_MARGIN = 0.08

_DROP = re.compile(r"[\s\u3000·•.,，。、;；:：!！?？'\"“”‘’()（）\[\]【】<>《》\-_/\\|~～]+")
_WILD = "\x00"


def normalize(text: str) -> str:
    """NFKC, lower case, spaces and punctuation removed (both for keys and for texts)."""
    return _DROP.sub("", unicodedata.normalize("NFKC", text or "").lower())


def _strip_legal(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for suf in LEGAL_SUFFIXES:
            if key.endswith(suf) and len(key) > len(suf):
                key = key[: -len(suf)]
                changed = True
                break
    return key


def _strip_region(key: str, extra: Iterable[str] = ()) -> str:
    """Drop leading regions (上海, 江苏省苏州市, 华东区) and zones (工业园区)."""
    regions = sorted({*REGIONS, *(normalize(r) for r in extra if r)}, key=len, reverse=True)
    changed = True
    while changed:
        changed = False
        for reg in regions:
            if reg and key.startswith(reg) and len(key) > len(reg) + 1:
                key = key[len(reg):]
                for tail in REGION_TAILS:
                    if key.startswith(tail) and len(key) > 2:
                        key = key[1:]
                        break
                changed = True
                break
        for zone in ZONES:
            if key.startswith(zone) and len(key) > len(zone) + 1:
                key = key[len(zone):]
                changed = True
                break
    return key


def derived_keys(name: str, region: str = "") -> list[tuple[str, str]]:
    """(key, kind) derived from a full name: stripped core, then core minus a trade word."""
    full = normalize(name)
    out: list[tuple[str, str]] = []
    core = _strip_region(_strip_legal(full), [region, region.rstrip("区")])
    if core != full:
        out.append((core, "core"))
    no_region = _strip_legal(full)
    if no_region not in (full, core):
        out.append((no_region, "core"))  # 上海浦江机电设备 (region kept, suffix dropped)
    for suf in sorted(TRADE_SUFFIXES, key=len, reverse=True):
        if core.endswith(suf):
            out.append((core[: -len(suf)], "core2"))
            break
    # a core that starts with a generic word (精密零部件, 科技创新…) reads like ordinary chat
    return [(k, kind) for k, kind in out
            if len(k) >= (MIN_CORE2 if kind == "core2" else MIN_DERIVED)
            and not any(k[:n] in GENERIC for n in (2, 3, 4))]


@dataclass(frozen=True)
class Candidate:
    customer_id: int
    name: str
    score: float
    matched: str  # the (normalised) text that matched
    kind: str = "name"  # name | alias | short | core | core2, + "~" when one character is
    # wrong, "~sound" (homophone), "~pinyin" (pinyin / English rendering), "~initials"
    start: int = 0  # span in the normalised text
    end: int = 0

    @property
    def confirm(self) -> bool:
        """Not matched character for character: worth a question to the rep."""
        return "~" in self.kind


def _get(row: Any, name: str, default: Any = None) -> Any:
    if isinstance(row, dict):
        return row.get(name, default)
    return getattr(row, name, default)


class CustomerMatcher:
    """Index once (``from_rows``), then ``find(text)`` many times; immutable after build.

    Memory is kept flat (parallel lists, hashes instead of variant strings): ~1 KB per
    customer at 100k customers; the phonetic index adds its own maps."""

    def __init__(self, phonetic: bool = True) -> None:
        self._cid: list[int] = []  # customer index → id, name, owner
        self._cname: list[str] = []
        self._cowner: list[int | None] = []
        self._ktext: list[str] = []  # key index → text, customer index, kind
        self._kcust: list[int] = []
        self._kkind: list[str] = []
        self._exact: dict[str, int | list[int]] = {}  # key text → key index(es)
        self._fuzzy: dict[int, int | list[int]] = {}  # hash(blanked variant) → key index(es)
        self._exact_lengths: list[int] = []
        self._fuzzy_lengths: list[int] = []
        self._prefixes: set[str] = set()
        self._phonetic: Any = None
        if phonetic:
            from bot.matching_phonetic import PhoneticIndex

            self._phonetic = PhoneticIndex(self._kcust)

    def __len__(self) -> int:
        return len(self._cid)

    def keys_of(self, customer_id: int) -> list[tuple[str, str]]:
        """(key, kind) indexed for one customer (for tests and debugging; a linear scan)."""
        return [(t, k) for t, c, k in zip(self._ktext, self._kcust, self._kkind, strict=True)
                if self._cid[c] == customer_id]

    # -- build ------------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Iterable[Any], phonetic: bool = True) -> CustomerMatcher:
        """``rows``: dicts or objects with ``id``, ``name`` and optionally ``aliases`` (list),
        ``short_name``, ``region``, ``owner_id``. ``phonetic=False``: characters only (the
        matcher as it was before the phonetic layer)."""
        m = cls(phonetic=phonetic)
        for row in rows:
            m._add(row)
        if m._phonetic is not None:
            m._phonetic.finish()
        m._exact_lengths = sorted({len(t) for t in m._exact})
        m._fuzzy_lengths = sorted({len(m._ktext[ki]) for v in m._fuzzy.values()
                                   for ki in _iter(v)})
        return m

    def _add(self, row: Any) -> None:
        name = str(_get(row, "name", "") or "")
        region = str(_get(row, "region", "") or "")
        ci = len(self._cid)
        self._cid.append(int(_get(row, "id")))
        self._cname.append(name)
        self._cowner.append(_get(row, "owner_id"))
        seen: dict[str, str] = {}
        raw: list[tuple[str, str]] = [(normalize(name), "name")]
        raw += [(normalize(a), "alias") for a in (_get(row, "aliases") or ())]
        raw.append((normalize(str(_get(row, "short_name", "") or "")), "short"))
        raw += derived_keys(name, region)
        for alias in _get(row, "aliases") or ():
            raw += derived_keys(str(alias), region)
        for text, kind in raw:
            if len(text) < MIN_EXACT or text in GENERIC or text in seen:
                continue
            seen[text] = kind
        # one-character tolerance on the *smallest* keys only (4–MAX_FUZZY characters, not the
        # full name): a slip inside a longer key is inside one of these, or outside them and
        # harmless — and each fuzzy key costs one index entry per character
        tolerant = [t for t, k in seen.items() if k != "name" and MIN_FUZZY <= len(t) <= MAX_FUZZY]
        tolerant = [t for t in tolerant if not any(o != t and o in t for o in tolerant)]
        for text, kind in seen.items():
            self._index(text, ci, kind, fuzzy=text in tolerant)

    def _index(self, text: str, ci: int, kind: str, fuzzy: bool) -> None:
        ki = len(self._ktext)
        self._ktext.append(text)
        self._kcust.append(ci)
        self._kkind.append(kind)
        _put(self._exact, text, ki)
        self._prefixes.add(text[:2])
        if fuzzy:
            for j in range(len(text)):
                _put(self._fuzzy, hash(text[:j] + _WILD + text[j + 1:]), ki)
        if self._phonetic is not None:
            self._phonetic.add(text, ki, ci, kind)

    def _near_full_name(self, t: str, ci: int, key: str, start: int):
        """A near-miss key inside the customer's full name (or the name without its legal
        suffix), with the rest of that name around it: (start, end) of that longer hit."""
        return _near_full_name_impl(t, self._cname[ci], key, start)

    # -- query ------------------------------------------------------------------------------
    def find(self, text: str, owner_id: int | None = None, limit: int = 5) -> list[Candidate]:
        """Ranked candidates (best first, one per customer). ``owner_id`` nudges the rep's own
        customers up when two are otherwise equal."""
        t = normalize(text)
        n = len(t)
        if n < MIN_EXACT or not self._ktext:
            return []
        hits: list[tuple[int, int, int, int]] = []  # (key index, start, end, mode)
        exact_spans: list[tuple[int, int, int]] = []  # (start, end, customer)
        lengths = self._exact_lengths
        prefixes = self._prefixes
        exact = self._exact
        for i in range(n - 1):
            if t[i:i + 2] not in prefixes:
                continue
            for L in lengths:
                if i + L > n:
                    break
                found = exact.get(t[i:i + L])
                if found is None:
                    continue
                for ki in _iter(found):
                    hits.append((ki, i, i + L, 0))
                    exact_spans.append((i, i + L, self._kcust[ki]))
        fuzzy = self._fuzzy
        ktext = self._ktext
        for L in self._fuzzy_lengths:
            if L > n:
                break
            for i in range(n - L + 1):
                w = t[i:i + L]
                if w in exact:  # exact hit already recorded
                    continue
                for j in range(L):
                    found = fuzzy.get(hash(w[:j] + _WILD + w[j + 1:]))
                    if found is None:
                        continue
                    for ki in _iter(found):
                        k = ktext[ki]
                        if len(k) == L and _one_off(k, w):
                            hits.append((ki, i, i + L, 1))
        if self._phonetic is not None:
            hits += self._phonetic.find(text, t, exact, ktext)
        return self._rank(t, hits, exact_spans, owner_id, limit)

    def _rank(self, t: str, hits, exact_spans, owner_id, limit) -> list[Candidate]:
        best: dict[int, Candidate] = {}
        count: dict[int, int] = {}
        # another customer's key said with one or two homophones around a shorter exact key:
        # (start, end, customer, positions of the homophones)
        sounds = [(s, e, self._kcust[ki], diff) for ki, s, e, mode in hits if mode == 2
                  and len(diff := [s + j for j, (a, b) in enumerate(zip(
                      t[s:e], self._ktext[ki], strict=True)) if a != b]) <= 2]
        for ki, s, e, mode in hits:
            ci, kind, ktext = self._kcust[ki], self._kkind[ki], self._ktext[ki]
            fz = mode == 1
            # a hit inside a longer exact hit of *another* customer is that customer's word
            if any(es <= s and e <= ee and (ee - es) > (e - s) and cu != ci
                   for es, ee, cu in exact_spans):
                continue
            if mode < 2 and any(ss <= s and e <= se and se - ss > e - s and cu != ci
                                and not any(s <= j < e for j in diff)
                                for ss, se, cu, diff in sounds):
                continue  # … and so is one inside a longer sound-alike (same characters there)
            if fz and any(es < e and s < ee for es, ee, _ in exact_spans):
                continue  # an exact hit on the same spot wins over a near miss
            if mode > 1 and any(es < e and s < ee and cu != ci and not (s <= es and ee <= e
                                                                         and ee - es < e - s)
                                for es, ee, cu in exact_spans):
                continue  # … and over another customer's sound-alike, unless inside it
            score = KIND_SCORE[kind] * _length_factor(len(ktext))
            suffix = "~" if fz else ""
            if mode > 1:
                factor, suffix = PHONETIC[mode]
                score *= factor
            if fz:
                score *= FUZZY_FACTOR
                longer = self._near_full_name(t, ci, ktext, s)
                if longer is not None:  # the whole name is there, one slip in it
                    s, e = longer
                    kind, score = "name", KIND_SCORE["name"] * FUZZY_FACTOR
            if owner_id is not None and self._cowner[ci] == owner_id:
                score += OWNER_BONUS
            count[ci] = count.get(ci, 0) + 1
            score = min(score, 1.0)
            prev = best.get(ci)
            if prev is None or score > prev.score:
                best[ci] = Candidate(self._cid[ci], self._cname[ci], round(score, 4), t[s:e],
                                     kind + suffix, s, e)
        out = []
        for ci, cand in best.items():
            bonus = REPEAT_BONUS * min(count[ci] - 1, 3)
            cap = PHONETIC_CAP if cand.kind.endswith(PHONETIC_KINDS) else 1.0
            out.append(Candidate(cand.customer_id, cand.name,
                                 round(min(cand.score + bonus, cap), 4), cand.matched,
                                 cand.kind, cand.start, cand.end))
        out.sort(key=lambda c: (-c.score, -(c.end - c.start), c.customer_id))
        return out[:limit]


def _near_full_name_impl(t: str, name: str, key: str, start: int) -> tuple[int, int] | None:
    full = normalize(name)
    for longer in (full, _strip_legal(full)):
        off = longer.find(key)
        if off < 0 or len(longer) <= len(key):
            continue
        s = start - off
        e = s + len(longer)
        if s >= 0 and e <= len(t) and _one_off(longer, t[s:e]):
            return s, e
    return None


def is_ambiguous(cands: list[Candidate], margin: float = AMBIGUITY_MARGIN) -> bool:
    """Two or more candidates within ``margin`` of the best: the card should ask."""
    return len(cands) >= 2 and cands[1].score >= cands[0].score - margin


def resolve(cands: list[Candidate]) -> Candidate | None:
    """The automatic choice, or None when there is nothing or it is ambiguous."""
    if not cands or is_ambiguous(cands):
        return None
    return cands[0]


def _length_factor(n: int) -> float:
    """Short keys are weak evidence; past 4 characters each one adds a little (a longer hit
    of the same customer is the better witness)."""
    return 0.7 if n <= 2 else 0.88 if n == 3 else 1.0 + min(n - 4, 6) * 0.006


def _one_off(a: str, b: str) -> bool:
    diff = 0
    for x, y in zip(a, b, strict=True):
        if x != y:
            diff += 1
            if diff > 1:
                return False
    return True


def _put(index: dict, key: Any, value: int) -> None:
    cur = index.get(key)
    if cur is None:
        index[key] = value
    elif isinstance(cur, list):
        if value not in cur:
            cur.append(value)
    elif cur != value:
        index[key] = [cur, value]


def _iter(found: int | list[int]) -> Iterable[int]:
    return found if isinstance(found, list) else (found,)


# -- loading from the database -------------------------------------------------------------
async def load_rows(session) -> list[dict[str, Any]]:
    """Customer rows (with aliases) for ``CustomerMatcher.from_rows``."""
    from sqlmodel import select

    from storage.models import Customer, CustomerAlias

    customers = (await _run(session, select(Customer.id, Customer.name, Customer.short_name,
                                            Customer.region, Customer.owner_id))).all()
    aliases: dict[int, list[str]] = {}
    for cid, alias in (await _run(session, select(CustomerAlias.customer_id,
                                                 CustomerAlias.alias))).all():
        aliases.setdefault(cid, []).append(alias)
    return [{"id": cid, "name": name, "short_name": short or "", "region": region or "",
             "owner_id": owner, "aliases": aliases.get(cid, [])}
            for cid, name, short, region, owner in customers]


async def _run(session, q):
    """``exec`` on a SQLModel session, ``execute`` on a plain SQLAlchemy one."""
    return await (session.exec(q) if hasattr(session, "exec") else session.execute(q))


THREAD_BUILD_ROWS = 2000


class MatcherCache:
    """One matcher per database, rebuilt when the customer list changes (a cheap fingerprint
    query per use: counts and max ids of customers and aliases — a rename in place is not
    seen until the next insert or delete)."""

    def __init__(self) -> None:
        self._fp: tuple | None = None
        self._matcher: CustomerMatcher | None = None

    async def get(self, session) -> CustomerMatcher:
        from sqlalchemy import func
        from sqlmodel import select

        from storage.models import Customer, CustomerAlias

        fp = tuple((await _run(session, select(
            select(func.count(Customer.id)).scalar_subquery(),
            select(func.max(Customer.id)).scalar_subquery(),
            select(func.count(CustomerAlias.id)).scalar_subquery(),
            select(func.max(CustomerAlias.id)).scalar_subquery()))).one())
        if self._matcher is None or fp != self._fp:
            rows = await load_rows(session)
            from bot.matching_phonetic import loaded

            # seconds of CPU at 100k (and the first build reads pypinyin's tables): off the loop
            if len(rows) > THREAD_BUILD_ROWS or not loaded():
                import asyncio

                self._matcher = await asyncio.to_thread(CustomerMatcher.from_rows, rows)
            else:
                self._matcher = CustomerMatcher.from_rows(rows)
            self._fp = fp
        return self._matcher
