"""统一社会信用代码 (unified social credit code, GB 32100-2015): 18 characters from a
31-character alphabet (digits and capitals without I, O, Z, S, V); the last one is a check
character: weights 3^i mod 31 over the first 17, check = 31 − (Σ mod 31), 31 → 0."""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def clean(code: str) -> str:
    """Upper case, spaces removed (the form the table stores)."""
    return "".join((code or "").split()).upper()


def check_char(first17: str) -> str:
    total = sum(_VALUE[c] * w for c, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def problem(code: str) -> str:
    """Why ``code`` (already ``clean``) is not a valid credit code; "" when it is."""
    if len(code) != 18:
        return f"统一社会信用代码应为18位 / credit code must be 18 characters (got {len(code)})"
    bad = sorted({c for c in code if c not in _VALUE})
    if bad:
        return f"统一社会信用代码含非法字符 / invalid characters: {''.join(bad)}"
    if check_char(code[:17]) != code[17]:
        return "统一社会信用代码校验位错误 / wrong check character"
    return ""


def is_valid(code: str) -> bool:
    return not problem(clean(code))
