"""What a dashboard password must be: at least MIN_PASSWORD_CHARS long, and not easy to guess.

"Easy to guess" is zxcvbn's estimate (Dropbox's, a maintained Python port): it knows the common
password lists (tens of thousands of the most used passwords), names and words, keyboard walks,
dates, repeats and sequences, and the account's own name and "gatescan" given as the user's
inputs, so "password1234", "123456789012", "qwertyuiop12" and "gatescan2026" are refused while a
few words together ("mật khẩu bảo vệ cổng B") pass. A score of MIN_SCORE (of 0-4) means at least
10^8 guesses in its model: out of reach of online guessing behind the login's rate limit.
"""

from __future__ import annotations

MIN_PASSWORD_CHARS = 12
MIN_SCORE = 3
# zxcvbn's time grows fast with length (it refuses more than 72 characters): what follows the
# first SCORED_CHARS only adds strength.
SCORED_CHARS = 72
SITE_WORDS = ("gatescan",)


def password_problem(password: str, user_name: str) -> str | None:
    """Why `password` is refused for `user_name` (a line a person can act on), or None."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"the password is shorter than {MIN_PASSWORD_CHARS} characters"
    from zxcvbn import zxcvbn  # its word lists take a moment to load: only when needed

    estimate = zxcvbn(
        password[:SCORED_CHARS], user_inputs=[user_name, *SITE_WORDS], max_length=SCORED_CHARS
    )
    if estimate["score"] >= MIN_SCORE:
        return None
    warning = str(estimate["feedback"].get("warning") or "").rstrip(".")
    why = f" ({warning})" if warning else ""
    return f"the password is easy to guess{why}: choose a longer one, a few words together"
