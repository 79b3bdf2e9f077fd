"""The password policy: long enough, and not easy to guess."""

from __future__ import annotations

import pytest

from server.accounts.password_policy import MIN_PASSWORD_CHARS, password_problem


@pytest.mark.parametrize(
    "password",
    [
        "password1234",  # among the most used passwords
        "123456789012",
        "qwertyuiop12",  # a keyboard walk
        "aaaaaaaaaaaa",
        "gatescan2026",  # the product's own name
        "nguyenvanlan1",  # the account's own name
    ],
)
def test_a_long_but_easy_to_guess_password_is_refused_saying_so(password: str) -> None:
    problem = password_problem(password, "nguyenvanlan")
    assert problem is not None and problem.startswith("the password is easy to guess")


@pytest.mark.parametrize(
    "password", ["mật khẩu bảo vệ cổng B", "purple elephant marmalade", "Trạm-thu-phí-Hà-Nội-7"]
)
def test_a_few_words_together_pass(password: str) -> None:
    assert password_problem(password, "nguyenvanlan") is None


def test_a_short_password_is_refused_before_any_guessing() -> None:
    problem = password_problem("xY7#kq!", "lan")
    assert problem == f"the password is shorter than {MIN_PASSWORD_CHARS} characters"


def test_a_very_long_password_is_judged_in_bounded_time() -> None:
    # zxcvbn's work grows fast with length: only the first characters are scored.
    assert password_problem("a" * 1000 + "phố cổ Hội An mùa mưa", "lan") is not None
    assert password_problem("phố cổ Hội An mùa mưa " * 40, "lan") is None
