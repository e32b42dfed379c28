"""MIME bundles -> result events (code-interpreter.md §2.2-§2.4), language facts (§4.2, §4.7) and the
FastAPI-shaped request validation of the HTTP adapter (§1.1, §1.3)."""

from __future__ import annotations

import json

import pytest

from envd.api.code_http import ValidationFailed, _parse_body, encode_line, validate_create, validate_execute
from envd.services.code import languages
from envd.services.code.results import result_event, unquote


@pytest.mark.parametrize(
    ("raw", "text"),
    [("'hello'", "hello"), ('"it\'s"', "it's"), ("'/home/user'", "/home/user"), ('[1] "bar"', '[1] "bar"'),
     ("'", ""), ("'a\"", "'a\""), ("2", "2"), ("", ""), ("''", ""), ("'\\n'", "\\n")],
)
def test_text_loses_one_pair_of_matching_quotes(raw: str, text: str) -> None:
    assert unquote(raw) == text


def test_every_known_mime_type_gets_its_key_in_upstream_order() -> None:
    bundle = {
        "application/vnd.plotly.v1+json": {"data": []},
        "e2b/chart": {},
        "e2b/data": {"a": [1]},
        "application/javascript": "js",
        "application/json": [1, 2],
        "text/latex": "$x$",
        "application/pdf": "JVBER",
        "image/jpeg": "/9j/",
        "image/png": "iVBOR",
        "image/svg+xml": "<svg/>",
        "text/markdown": "# md",
        "text/html": "<b/>",
        "text/plain": "'t'",
    }
    event = result_event(bundle, is_main_result=True)
    assert list(event) == ["type", "text", "html", "markdown", "svg", "png", "jpeg", "pdf", "latex", "json",
                           "javascript", "data", "chart", "extra", "is_main_result"]
    assert event["text"] == "t" and event["json"] == [1, 2] and event["chart"] == {}
    assert event["extra"] == {"application/vnd.plotly.v1+json": {"data": []}}
    assert bundle["text/plain"] == "'t'"  # the kernel's bundle is not modified


def test_absent_formats_are_omitted_but_extra_and_main_flag_always_present() -> None:
    assert result_event({"text/plain": "2"}, False) == {"type": "result", "text": "2", "extra": {},
                                                        "is_main_result": False}
    assert result_event({"text/html": None, "text/plain": ""}, True) == {
        "type": "result", "text": "", "extra": {}, "is_main_result": True}


def test_lines_are_ascii_json_without_line_breaking_characters() -> None:
    line = encode_line({"type": "stdout", "text": "a\u2028b\u0085c\rd\x0be é"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()
    assert json.loads(line)["text"] == "a\u2028b\u0085c\rd\x0be é"
    assert b"\r" not in line and b"\x0b" not in line
    assert "\n".join([line.decode()[:-1]]).splitlines() == [line.decode()[:-1]]


@pytest.mark.parametrize(("raw", "normalized"), [(None, "python"), ("", "python"), (" JS ", "javascript"),
                                                  ("ts", "typescript"), ("R", "r"), ("Bash", "bash")])
def test_language_normalization(raw, normalized) -> None:
    assert languages.normalize(raw) == normalized


def test_python_env_statements_escape_values() -> None:
    namespace: dict = {}
    import os

    statement = languages.set_env_statement("python", "ENVD_T'EST", "a'b\"c\\d\n")
    try:
        exec(statement, namespace)
        assert os.environ["ENVD_T'EST"] == "a'b\"c\\d\n"
        exec(languages.unset_env_statement("python", "ENVD_T'EST"), namespace)
        assert "ENVD_T'EST" not in os.environ
    finally:
        os.environ.pop("ENVD_T'EST", None)
    assert "os" not in namespace  # no `os` leaks into the user's namespace
    assert languages.set_env_statement("cobol", "K", "V") is None


def test_execute_validation_accepts_both_sdk_shapes() -> None:
    assert validate_execute({"code": "1", "context_id": None, "language": None, "env_vars": None}) == (
        "1", None, None, None)
    assert validate_execute({"code": "1", "env_vars": {"A": "b"}, "unknown": 1}) == ("1", None, None, {"A": "b"})


def test_execute_validation_is_strict_and_reports_every_field() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_execute({"code": 1, "context_id": 2, "language": [], "env_vars": {"A": 1, "B": "ok"}})
    assert [d["loc"] for d in caught.value.details] == [
        ["body", "code"], ["body", "context_id"], ["body", "language"], ["body", "env_vars", "A"]]
    assert {d["type"] for d in caught.value.details} == {"string_type"}
    with pytest.raises(ValidationFailed) as caught:
        validate_execute({"env_vars": []})
    assert [(d["type"], d["loc"]) for d in caught.value.details] == [
        ("missing", ["body", "code"]), ("dict_type", ["body", "env_vars"])]


def test_body_parsing_errors() -> None:
    with pytest.raises(ValidationFailed) as caught:
        _parse_body(b"", allow_empty=False)
    assert caught.value.details == [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
    assert _parse_body(b"", allow_empty=True) == {}
    with pytest.raises(ValidationFailed) as caught:
        _parse_body(b"[1]", allow_empty=True)
    assert caught.value.details[0]["type"] == "model_attributes_type"
    with pytest.raises(ValidationFailed) as caught:
        _parse_body(b'{"code": ', allow_empty=False)
    assert caught.value.details[0]["type"] == "json_invalid" and caught.value.details[0]["loc"] == ["body", 9]
    assert validate_create({}) == (None, None)
    with pytest.raises(ValidationFailed):
        validate_create({"language": 3})
