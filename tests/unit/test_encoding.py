"""Accept-Encoding negotiation, request Content-Encoding, MIME parameters (spec/envd.md §3.6.1, §3.6, §3.7)."""

import pytest

from envd.api.encoding import (
    GZIP,
    IDENTITY,
    HeaderParamError,
    NotAcceptable,
    UnsupportedEncoding,
    content_disposition,
    identity_refused,
    negotiate,
    parse_header_params,
    request_is_gzip,
    unescape_form_filename,
)


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, IDENTITY),
        ("", IDENTITY),
        ("   ", IDENTITY),
        ("gzip", GZIP),
        ("GZIP", GZIP),
        ("gzip, deflate", GZIP),  # what httpx and undici send by default
        ("deflate, gzip", GZIP),  # unsupported codings are skipped
        ("gzip;q=0.5, identity", IDENTITY),
        ("identity;q=0.2, gzip;q=0.8", GZIP),
        ("br", IDENTITY),
        ("br, deflate", IDENTITY),
        ("*", IDENTITY),
        ("*, identity;q=0", GZIP),
        ("*;q=0, gzip", GZIP),
        ("gzip;q=0", IDENTITY),
        ("gzip;q=abc", GZIP),  # unparsable q ignored: stays 1.0
        ("gzip ; q=1.0 , identity;q=0.5", GZIP),
    ],
)
def test_negotiate(header, expected):
    assert negotiate(header) == expected


@pytest.mark.parametrize("header", ["br, identity;q=0", "identity;q=0", "*;q=0", "gzip;q=0, identity;q=0", "br, *;q=0"])
def test_negotiate_refuses_when_identity_is_refused_and_nothing_else_fits(header):
    with pytest.raises(NotAcceptable, match=r"no acceptable encoding found, supported: \[gzip\]"):
        negotiate(header)


@pytest.mark.parametrize(
    "header, refused",
    [
        ("identity;q=0", True),
        ("*;q=0", True),
        ("*;q=0, identity", False),
        ("*;q=0, identity;q=0.1", False),
        ("gzip", False),
        (None, False),
    ],
)
def test_identity_refused(header, refused):
    assert identity_refused(header) is refused


@pytest.mark.parametrize(
    "value, gzip",
    [(None, False), ("", False), ("identity", False), ("gzip", True), ("GZip", True), ("gzip;q=0.5", True)],
)
def test_request_content_encoding(value, gzip):
    assert request_is_gzip(value) is gzip


def test_request_content_encoding_unsupported_names_the_value():
    with pytest.raises(UnsupportedEncoding) as err:
        request_is_gzip("br")
    assert str(err.value) == "unsupported Content-Encoding: br, supported: [gzip]"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("test.txt", "inline; filename=test.txt"),
        ("my document.pdf", 'inline; filename="my document.pdf"'),
        ('file"name.txt', 'inline; filename="file\\"name.txt"'),
        ("back\\slash", 'inline; filename="back\\\\slash"'),
        ("a=b", 'inline; filename="a=b"'),
        ("文档.pdf", "inline; filename*=utf-8''%E6%96%87%E6%A1%A3.pdf"),
        ("naïve file.txt", "inline; filename*=utf-8''na%C3%AFve%20file.txt"),
        ("", 'inline; filename=""'),
    ],
)
def test_content_disposition(name, expected):
    assert content_disposition("inline", name) == expected


def test_parse_header_params_unquotes_and_keeps_directories():
    kind, params = parse_header_params('form-data; name="file"; filename="dir/sub/x \\"q\\".txt"')
    assert kind == "form-data"
    assert params == {"name": "file", "filename": 'dir/sub/x "q".txt'}


def test_parse_header_params_tokens_case_and_rfc2231():
    kind, params = parse_header_params("Multipart/Form-Data; Boundary=abc123")
    assert (kind, params) == ("multipart/form-data", {"boundary": "abc123"})
    _, params = parse_header_params("attachment; filename=plain.txt; filename*=utf-8''%E6%96%87.txt")
    assert params["filename"] == "文.txt"  # the extended form wins


@pytest.mark.parametrize(
    "value",
    ["", "; name=x", 'form-data; name="unterminated', "form-data; name", "form-data; a=1; a=2", "form-data; =x"],
)
def test_parse_header_params_rejects_malformed(value):
    with pytest.raises(HeaderParamError):
        parse_header_params(value)


@pytest.mark.parametrize(
    "escaped, raw",
    [
        ("a%22b.txt", 'a"b.txt'),
        ("line%0Abreak%0D.txt", "line\nbreak\r.txt"),
        ("tab%09.txt", "tab\t.txt"),
        ("100%25.txt", "100%25.txt"),  # only the escapes browsers and httpx produce are undone
        ("dir/%41.txt", "dir/%41.txt"),
        ("plain/path/ünï.txt", "plain/path/ünï.txt"),
    ],
)
def test_unescape_form_filename(escaped, raw):
    assert unescape_form_filename(escaped) == raw
