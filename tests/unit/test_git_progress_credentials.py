"""Git core pieces without a daemon: progress line parsing/throttling, credential handling in URLs."""

from __future__ import annotations

import pytest

from envd.services.git.credentials import Credentials, redact, split_url
from envd.services.git.progress import Progress, ProgressLines, parse_line
from envd.services.git.gitconfig import parse_key
from envd.errors import InvalidArgument


def test_parse_counted_and_plain_lines():
    assert parse_line("Receiving objects:  42% (21/50), 1.2 MiB | 3 MiB/s") == Progress(
        "Receiving objects:  42% (21/50), 1.2 MiB | 3 MiB/s", "Receiving objects", 21, 50)
    assert parse_line("remote: Counting objects: 7, done.") == Progress(
        "remote: Counting objects: 7, done.", "Counting objects", 7, 0)
    assert parse_line("generating index: 3/6") == Progress("generating index: 3/6")


def test_chunks_split_on_cr_and_lf_and_a_stage_is_throttled_but_ends_complete():
    seen: list[Progress] = []
    sink = ProgressLines(seen.append, lambda: False)
    sink.INTERVAL_S = 3600
    for chunk in (b"Resolving deltas:   0% (0/3)\rResolving del", b"tas:  33% (1/3)\r", b"Resolving deltas: 100% (3/3)\n",
                  b"Unpacking objects: 50% (1/2)"):
        sink.write(chunk)
    sink.flush()
    assert [(p.stage, p.current, p.total) for p in seen] == [
        ("Resolving deltas", 0, 3), ("Resolving deltas", 3, 3), ("Unpacking objects", 1, 2)]


def test_a_cancelled_operation_stops_at_its_next_progress_report():
    sink = ProgressLines(lambda p: None, lambda: True)
    with pytest.raises(InterruptedError):
        sink.write(b"Receiving objects: 1% (1/100)\r")


def test_credentials_are_split_from_urls_and_never_printed():
    url, creds = split_url("https://al%40ice:p%3Ass@example.com:8443/r.git")
    assert url == "https://example.com:8443/r.git" and creds == Credentials("al@ice", "p:ss")
    assert "p:ss" not in repr(creds)
    assert split_url("https://example.com/r.git") == ("https://example.com/r.git", None)
    assert split_url("git@example.com:r.git") == ("git@example.com:r.git", None)
    assert redact("failed for https://bob:hunter2@example.com/x") == "failed for https://***@example.com/x"


def test_config_keys():
    assert parse_key("user.email") == ((b"user",), b"email")
    assert parse_key("remote.my.fork.url") == ((b"remote", b"my.fork"), b"url")
    with pytest.raises(InvalidArgument):
        parse_key("nosection")
