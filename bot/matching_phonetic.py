"""The phonetic layer of ``bot.matching``: customer keys found by sound, not by characters.

Speech-to-text writes a customer's name with homophones (华东精蜜 for 华东精密), in pinyin
("huadong jingmi", "HuaDongJingMi") or half in English ("Kunming Dianchi Tea" for 昆明滇池茶业);
a shop sign read by OCR may carry the initials ("HDJM"). Three hash maps are built with the
character index, so a message costs window look-ups only, never a loop over the customers:

- ``sound``: the key's tone-less syllables (one private-use code character per syllable, so a
  window of the text is a plain string slice), for Chinese text whose characters differ but
  sound the same;
- ``latin``: the key's pinyin letters without spaces, and English renderings where a trailing
  industry word (茶业 → tea, 精密 → precision …) is said in English; looked up on runs of latin
  words of the text (the speaker's word boundaries are kept, the letters are joined);
- ``initials``: the first letters of the syllables (4+ letters), only where one customer has
  them, looked up on an upper-case word of the text.

Precision: phonetic keys need 3+ syllables (4+ for initials); a key whose sound begins like a
generic word (科技, 精密 …) or sounds like an ordinary dictionary word is no phonetic key; a
3-syllable window must share a character with the key. Heteronyms: a key is indexed under its
characters' first readings and under its phrase readings (pypinyin's phrase list, 重庆 →
chong qing); text is read with each character's first reading.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from itertools import product
from typing import Any

from bot.matching import _DROP, GENERIC, _put

MIN_SYLLABLES = 3
MIN_INITIALS = 4
MAX_INITIALS = 8
MAX_WORDS = 12  # latin words joined into one window
MAX_VARIANTS = 12  # English renderings per key
SOUND, PINYIN, INITIALS = 2, 3, 4  # hit modes (0 exact and 1 one-wrong-character: bot.matching)

# Industry words: Chinese ↔ English renderings (lower case; spaces dropped when indexed).
INDUSTRY = {
    "茶业": ("tea", "tea industry"), "茶叶": ("tea",), "化工": ("chemical", "chemicals"),
    "机械": ("machinery", "machine"), "物流": ("logistics",), "科技": ("technology", "tech"),
    "技术": ("technology",), "贸易": ("trading", "trade"),
    "电子": ("electronics", "electronic"), "精密": ("precision",), "精工": ("precision",),
    "食品": ("food", "foods"), "医药": ("pharmaceutical", "pharma"), "药业": ("pharmaceutical",),
    "医疗器械": ("medical devices", "medical equipment"), "医疗": ("medical",),
    "新能源": ("new energy",), "能源": ("energy",), "智能": ("intelligent", "smart"),
    "包装": ("packaging",), "模具": ("mould", "mold"), "五金": ("hardware",),
    "塑胶": ("plastics", "plastic"), "纺织": ("textile", "textiles"),
    "环保": ("environmental",), "材料": ("materials", "material"),
    "光电": ("optoelectronics", "photoelectric"), "汽配": ("auto parts",),
    "仪器": ("instruments", "instrument"), "机电": ("electromechanical", "mechanical"),
    "设备": ("equipment",), "制造": ("manufacturing",), "工业": ("industrial", "industry"),
    "实业": ("industrial", "industry"), "零部件": ("parts", "components"),
    "配件": ("parts", "accessories"), "家电": ("appliances",), "电器": ("electric",),
    "软件": ("software",), "网络": ("network",), "信息": ("information",),
    "建材": ("building materials",), "钢铁": ("steel",), "汽车": ("automotive", "auto"),
    "服装": ("garment", "apparel"), "农业": ("agriculture",), "生物": ("biotech", "bio"),
    "集团": ("group",), "厂": ("factory",), "酒业": ("wine",), "乳业": ("dairy",),
    "建筑": ("construction",),
}
_INDUSTRY_LENGTHS = sorted({len(w) for w in INDUSTRY}, reverse=True)
# upper-case words that are English, not a customer's initials
ACRONYMS = frozenset({"asap", "http", "html", "json", "ceo", "cto", "todo", "ppt", "xlsx",
                      "docx", "pdf", "okr", "kpi", "gmv", "sku", "saas", "crm", "erp"})

_PUA = 0xE000
_CODES: dict[str, str] = {}  # tone-less syllable → its code character
_TABLE: dict[int, str] = {}  # code point of a Han character → code of its first reading
_READ: dict[int, str] = {}  # code point → tone-less first reading
_HETERO: set[str] = set()  # characters with more than one tone-less reading
_PHRASES: dict[str, list[str]] = {}  # phrase → tone-less readings
_COMMON: set[str] = set()  # sound strings of ordinary dictionary words
_GENERIC_SOUNDS: set[str] = set()
_PIECE = re.compile(r"(?P<w>[A-Z]+(?![a-z])|[A-Z]?[a-z]+)|(?P<d>"
                    + _DROP.pattern.removesuffix("+") + r")|(?P<o>.)", re.S)
_HAS_LATIN = re.compile(r"[A-Za-z]")


def _toneless(reading: str) -> str:
    """zhòng → zhong, lǜ → lu (ü folded into u, as latin text mostly writes it)."""
    return "".join(ch for ch in unicodedata.normalize("NFD", reading)
                   if not unicodedata.combining(ch)).replace("v", "u")


def _code(syllable: str) -> str:
    c = _CODES.get(syllable)
    if c is None:
        c = _CODES[syllable] = chr(_PUA + len(_CODES))
    return c


_LOCK = threading.Lock()  # matchers are built in worker threads (MatcherCache)


def loaded() -> bool:
    """The reading tables are in memory (a first build loads them: ~0.5 s of CPU)."""
    return bool(_GENERIC_SOUNDS)


def _load() -> None:
    """The reading tables, once per process (~0.5 s; pypinyin's data ships in its wheel)."""
    if _GENERIC_SOUNDS:  # filled last: everything else is ready
        return
    with _LOCK:
        if not _GENERIC_SOUNDS:
            _load_locked()


def _load_locked() -> None:
    from pypinyin.phrases_dict import phrases_dict
    from pypinyin.pinyin_dict import pinyin_dict

    for cp, readings in pinyin_dict.items():
        all_ = readings.split(",")
        first = _toneless(all_[0])
        if any(_toneless(r) != first for r in all_[1:]):
            _HETERO.add(chr(cp))
        _READ[cp] = first
        _TABLE[cp] = _code(first)
    for phrase, readings in phrases_dict.items():
        tl = [_toneless(r[0]) for r in readings]
        if len(tl) == len(phrase):
            _PHRASES[phrase] = tl
            if 3 <= len(phrase) <= 4:
                _COMMON.add("".join(_code(s) for s in tl))
    _GENERIC_SOUNDS.update(g.translate(_TABLE) for g in GENERIC)


def sound_of(text: str) -> str:
    """The sound string of ``text``: each Han character → the code of its first reading,
    anything else unchanged (so it never equals a key's code)."""
    _load()
    return text.translate(_TABLE)


def readings(key: str) -> list[list[str]]:
    """Tone-less syllables of an all-Han ``key``: first readings, then phrase readings when
    they differ (left to right, longest phrase first); [] when a character has no reading."""
    _load()
    first = [_READ.get(ord(c)) for c in key]
    if None in first:
        return []
    if not any(c in _HETERO for c in key):
        return [first]  # type: ignore[list-item]
    phrased = list(first)
    i = 0
    while i < len(key):
        for n in (4, 3, 2):
            tl = _PHRASES.get(key[i:i + n]) if i + n <= len(key) else None
            if tl:
                phrased[i:i + n] = tl
                i += n
                break
        else:
            i += 1
    out: list[list[str]] = [first]  # type: ignore[list-item]
    if phrased != first:
        out.append(phrased)  # type: ignore[arg-type]
    return out


def english_renderings(key: str, syllables: list[str]) -> list[str]:
    """Latin strings for ``key`` with up to three trailing industry words said in English:
    滇池茶业 → dianchitea (and dianchichaye from the pinyin itself)."""
    parts: list[tuple[int, int]] = []  # (start, end) of trailing industry words
    end = len(key)
    while len(parts) < 3:
        n = next((n for n in _INDUSTRY_LENGTHS if end > n and key[end - n:end] in INDUSTRY), 0)
        if not n:
            break
        parts.insert(0, (end - n, end))
        end -= n
    if not parts or end < 2:  # the brand must be there, in pinyin
        return []
    head = "".join(syllables[:end])
    choices = [["".join(syllables[s:e]), *(w.replace(" ", "") for w in INDUSTRY[key[s:e]])]
               for s, e in parts]
    out = []
    for combo in product(*choices):
        latin = head + "".join(combo)
        if combo != tuple(c[0] for c in choices):
            out.append(latin)
        if len(out) >= MAX_VARIANTS:
            break
    return out


class PhoneticIndex:
    """Built with the character index (``add`` per key, ``finish`` once), then queried by
    ``find`` for each message; returns hits in the matcher's (key, start, end, mode) form."""

    def __init__(self, key_customer: list[int]) -> None:
        """``key_customer``: the matcher's key index → customer index (read, not copied)."""
        _load()
        self._kcust = key_customer
        self.sound: dict[int, int | list[int]] = {}
        self.latin: dict[int, int | list[int]] = {}
        self.initials: dict[str, int] = {}  # initials → key index (-1 while building: shared)
        self._lengths: set[int] = set()
        self.sound_lengths: list[int] = []
        self.sound_prefixes: set[str] = set()
        self.latin_min = 10**9
        self.latin_max = 0

    def add(self, text: str, ki: int, ci: int, kind: str) -> None:
        if len(text) < MIN_SYLLABLES:
            return
        variants = readings(text)
        sounds = ["".join(map(_CODES.__getitem__, syl)) for syl in variants]
        for sound in sounds:
            if any(sound[:n] in _GENERIC_SOUNDS for n in (2, 3, 4)):
                return  # sounds like 科技…, 精密…: ordinary chat
            if len(sound) <= 4 and sound in _COMMON and text not in _PHRASES:
                return  # sounds like an ordinary word
        for syl, sound in zip(variants, sounds, strict=True):
            _put(self.sound, hash(sound), ki)
            self.sound_prefixes.add(sound[:2])
            self._lengths.add(len(sound))
            for latin in ("".join(syl), *english_renderings(text, syl)):
                _put(self.latin, hash(latin), ki)
                self.latin_min = min(self.latin_min, len(latin))
                self.latin_max = max(self.latin_max, len(latin))
            if kind != "name" and MIN_INITIALS <= len(syl) <= MAX_INITIALS:
                ini = "".join(s[0] for s in syl)
                prev = self.initials.get(ini, ki)
                # one customer only: a second one makes the initials useless (-1)
                self.initials[ini] = ki if prev == ki or (
                    prev >= 0 and self._kcust[prev] == ci) else -1

    def finish(self) -> None:
        self.sound_lengths = sorted(self._lengths)
        self.initials = {ini: ki for ini, ki in self.initials.items()
                         if ki >= 0 and ini not in ACRONYMS}

    def find(self, raw: str, t: str, exact: dict[str, Any], ktext: list[str]
             ) -> list[tuple[int, int, int, int]]:
        hits: list[tuple[int, int, int, int]] = []
        s = t.translate(_TABLE)
        n = len(s)
        sound, prefixes, lengths = self.sound, self.sound_prefixes, self.sound_lengths
        for i in range(n - MIN_SYLLABLES + 1):
            if s[i:i + 2] not in prefixes:
                continue
            for L in lengths:
                if i + L > n:
                    break
                found = sound.get(hash(s[i:i + L]))
                if found is None:
                    continue
                w = t[i:i + L]
                if w in exact:
                    continue  # the characters themselves are a key: the exact path has it
                for ki in _iter(found):
                    k = ktext[ki]
                    if len(k) != L or (L == MIN_SYLLABLES and not _shares(k, w)):
                        continue
                    hits.append((ki, i, i + L, SOUND))
        if self.latin and _HAS_LATIN.search(raw):
            hits += self._find_latin(raw)
        return hits

    def _find_latin(self, raw: str) -> list[tuple[int, int, int, int]]:
        words = _latin_words(raw)
        hits = []
        latin, lo, hi = self.latin, self.latin_min, self.latin_max
        for a in range(len(words)):
            joined = ""
            for b in range(a, min(len(words), a + MAX_WORDS)):
                if b > a and not words[b][4]:
                    break  # not adjacent: something other than spaces in between
                joined += words[b][0]
                if len(joined) > hi:
                    break
                if len(joined) < lo:
                    continue
                found = latin.get(hash(joined))
                if found is not None:
                    hits += [(ki, words[a][1], words[b][2], PINYIN) for ki in _iter(found)]
            word, start, end, upper, _adj = words[a]
            if upper and MIN_INITIALS <= len(word) <= MAX_INITIALS:
                ki = self.initials.get(word)
                if ki is not None:
                    hits.append((ki, start, end, INITIALS))
        return hits


def _latin_words(raw: str) -> list[tuple[str, int, int, bool, bool]]:
    """Latin words of ``raw`` (CamelCase split): (lower-case letters with ü folded to u,
    start, end in the normalised text, written in capitals, adjacent to the previous word)."""
    text = unicodedata.normalize("NFKC", raw).replace("ü", "u").replace("Ü", "U")
    out = []
    pos = 0
    adjacent = False
    for m in _PIECE.finditer(text):
        piece = m.group()
        if m.lastgroup == "w":
            low = piece.lower()
            out.append((low, pos, pos + len(low),
                        len(piece) > 1 and piece.isupper(), adjacent))
            pos += len(low)
            adjacent = True
        elif m.lastgroup == "o":
            pos += len(piece.lower())
            adjacent = False
    return out


def _shares(a: str, b: str) -> bool:
    return any(x == y for x, y in zip(a, b, strict=True))


def _iter(found: int | list[int]) -> Any:
    return found if isinstance(found, list) else (found,)
