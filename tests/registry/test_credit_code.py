"""统一社会信用代码 validation (GB 32100-2015): length, alphabet, check character."""

from __future__ import annotations

import pytest

from sales.credit_code import check_char, clean, is_valid, problem

# published codes of well-known companies (from their business licences)
REAL = ["91330100716105852F", "91110000710928807K", "91420000757013137P",
        "91440101MA5BLUR8XY"]


@pytest.mark.parametrize("code", REAL)
def test_real_codes_pass(code):
    assert problem(code) == ""
    assert check_char(code[:17]) == code[17]


def test_clean_and_errors():
    assert clean(" 9133 0100 716105852f ") == "91330100716105852F"
    assert is_valid(" 91330100716105852f")
    assert "18" in problem("9133010071610585")
    assert "非法字符" in problem("91330100716105852I")  # I is not in the alphabet
    assert "校验位" in problem("91330100716105852G")
    # every single-character slip in the body is caught by the check character
    code = REAL[0]
    for i in range(17):
        for c in "0123456789ABCDEFGHJKLMNPQRTUWXY":
            if c != code[i]:
                assert not is_valid(code[:i] + c + code[i + 1:])
