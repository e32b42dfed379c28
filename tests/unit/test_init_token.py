"""The /init token decision table (spec/envd.md §2.3)."""

import pytest

from envd.auth.init_token import init_token_rejection, token_hash
from envd.state import AccessToken


def token(value: str | None) -> AccessToken:
    t = AccessToken()
    t.set(value)
    return t


def test_hash_of_empty_string_is_sha512():
    assert token_hash("").startswith("cf83e1357eefb8bd") and token_hash("").endswith("927da3e")


@pytest.mark.parametrize(
    "existing, requested, mmds, expected",
    [
        (None, "new", None, None),  # first-time setup, MMDS absent
        (None, None, None, None),
        ("tok", "tok", None, None),  # re-sending the same token
        ("tok", "other", None, "access token validation failed"),  # change without MMDS
        ("tok", None, None, "access token reset not authorized"),  # clear without MMDS
        ("tok", "other", token_hash("other"), None),  # change authorised by MMDS
        ("tok", None, token_hash(""), None),  # clear authorised by MMDS
        ("tok", "other", token_hash("wrong"), "access token validation failed"),
        (None, "new", token_hash("different"), "access token validation failed"),  # MMDS present, no match
        (None, None, token_hash("x"), "access token reset not authorized"),
        ("tok", "tok", token_hash("other"), None),  # rule 1 wins before MMDS is consulted
    ],
)
def test_decision_table(existing, requested, mmds, expected):
    assert init_token_rejection(token(existing), requested, mmds) == expected


def test_token_never_printed():
    assert "secret" not in repr(token("secret"))
