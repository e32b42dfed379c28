"""Signed /files URLs: the published test vectors and the check order (spec/envd.md §2.6, sdk-expectations §3.4)."""

import pytest

from envd.auth.signatures import SignatureError, check_signature, sign


@pytest.mark.parametrize(
    "path, operation, username, token, expiration, signature",
    [
        ("/home/user/hello.txt", "read", "", "secret-token", None, "v1_ytpZKKz2vQXRZ8+eS8xBbRr9LL4kcwA5EgzNAGo1cWU"),
        ("hello.txt", "write", "user", "secret-token", 1767225600, "v1_WybI+3JCuJIzRc5roXrdXH+sQD0HQ8pIYw/PlW2WBPM"),
        ("/a", "read", "user", "tok123", None, "v1_o0bQ47NpVYP8PbsKprgEFChSk/mJoVCsiWZOUDf/Mbw"),
    ],
)
def test_vectors(path, operation, username, token, expiration, signature):
    assert sign(path, operation, username, token, expiration) == signature
    check_signature(
        path=path,
        operation=operation,
        username=username,
        token=token,
        signature=signature,
        expiration=expiration,
        now=1_700_000_000,
    )


def check(signature, expiration=None, now=1_000, **changes):
    args = dict(path="/p", operation="read", username="", token="tok")
    args.update(changes)
    check_signature(**args, signature=signature, expiration=expiration, now=now)


def test_missing_signature():
    for missing in (None, ""):
        with pytest.raises(SignatureError, match="^missing signature query parameter$"):
            check(missing)


def test_each_signed_field_matters():
    good = sign("/p", "read", "", "tok")
    check(good)
    for changes in ({"path": "/q"}, {"operation": "write"}, {"username": "user"}, {"token": "other"}):
        with pytest.raises(SignatureError, match="^invalid signature$"):
            check(good, **changes)
    with pytest.raises(SignatureError, match="^invalid signature$"):
        check(good, expiration=5_000)  # an expiration that was not signed


def test_no_padding_and_standard_alphabet():
    signature = sign("/home/user/hello.txt", "read", "", "secret-token")
    assert not signature.endswith("=") and len(signature) == 3 + 43


def test_expiry_is_checked_only_after_a_match():
    expired = sign("/p", "read", "", "tok", 999)
    with pytest.raises(SignatureError, match="^signature is already expired$"):
        check(expired, expiration=999, now=1_000)
    check(sign("/p", "read", "", "tok", 1_000), expiration=1_000, now=1_000)  # equality is still valid
    forged = expired[:-1] + ("A" if expired[-1] != "A" else "B")
    with pytest.raises(SignatureError, match="^invalid signature$"):
        check(forged, expiration=999, now=1_000)  # a forgery never learns that it expired
