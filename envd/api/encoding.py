"""Content codings and MIME parameters of the /files routes (spec/envd.md §3.6.1, §3.6 step 11, §3.7 step 3)."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

GZIP = "gzip"
IDENTITY = "identity"

TSPECIALS = frozenset('()<>@,;:\\"/[]?=')


class NotAcceptable(ValueError):
    """No coding of the Accept-Encoding header can be served (406)."""


class UnsupportedEncoding(ValueError):
    """A request Content-Encoding other than identity or gzip (400)."""


def _accept_items(header: str) -> list[tuple[str, float]]:
    items = []
    for raw in header.split(","):
        coding, *params = (part.strip() for part in raw.split(";"))
        if not coding:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    pass  # unparsable q is ignored (§3.6.1)
        items.append((coding.lower(), q))
    return items


def identity_refused(header: str | None) -> bool:
    items = _accept_items(header or "")
    if any(coding == IDENTITY and q == 0 for coding, q in items):
        return True
    star_refused = any(coding == "*" and q == 0 for coding, q in items)
    return star_refused and not any(coding == IDENTITY and q > 0 for coding, q in items)


def negotiate(header: str | None) -> str:
    """The response coding for an Accept-Encoding header: GZIP or IDENTITY (§3.6.1); NotAcceptable -> 406."""
    if not header or not header.strip():
        return IDENTITY
    refused = identity_refused(header)
    # sorted() is stable: equal q keeps header order, so `gzip, deflate` picks gzip.
    for coding, q in sorted(_accept_items(header), key=lambda item: -item[1]):
        if q <= 0:
            continue
        if coding == IDENTITY:
            return IDENTITY
        if coding == "*":
            return GZIP if refused else IDENTITY
        if coding == GZIP:
            return GZIP
    if refused:
        raise NotAcceptable("no acceptable encoding found, supported: [gzip]")
    return IDENTITY


def request_is_gzip(content_encoding: str | None) -> bool:
    """Whether an upload body is gzipped (§3.7 step 3); UnsupportedEncoding for anything but identity/gzip."""
    value = (content_encoding or "").strip()
    coding = value.split(";", 1)[0].strip().lower()
    if coding in ("", IDENTITY):
        return False
    if coding == GZIP:
        return True
    raise UnsupportedEncoding(f"unsupported Content-Encoding: {value}, supported: [gzip]")


# --- MIME parameters -------------------------------------------------------------------------------


def is_token(value: str) -> bool:
    return bool(value) and all(0x20 < ord(ch) < 0x7F and ch not in TSPECIALS for ch in value)


def _needs_rfc2231(value: str) -> bool:
    return any((ord(ch) < 0x20 or ord(ch) > 0x7E) and ch != "\t" for ch in value)


def content_disposition(kind: str, filename: str) -> str:
    """`inline; filename=...` formatted as Go's mime.FormatMediaType does (§3.6 step 11)."""
    if _needs_rfc2231(filename):
        encoded = []
        for byte in filename.encode("utf-8"):
            ch = chr(byte)
            if byte <= 0x20 or byte >= 0x7F or ch in "*'%" or ch in TSPECIALS:
                encoded.append(f"%{byte:02X}")
            else:
                encoded.append(ch)
        return f"{kind}; filename*=utf-8''{''.join(encoded)}"
    if is_token(filename):
        return f"{kind}; filename={filename}"
    escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
    return f'{kind}; filename="{escaped}"'


class HeaderParamError(ValueError):
    pass


def parse_header_params(value: str) -> tuple[str, dict[str, str]]:
    """`type; k=v; k2="quoted"` -> (lower-cased type, params) like Go's mime.ParseMediaType.

    Quoted strings lose their backslash escapes; RFC 2231 `key*=charset'lang'%XX` values are decoded
    and win over the plain `key`. Raises HeaderParamError on malformed input.
    """
    kind, _, rest = value.partition(";")
    kind = kind.strip().lower()
    if not kind:
        raise HeaderParamError("no media type")
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    pos = 0
    while True:
        pos = _skip_space(rest, pos)
        if pos >= len(rest):
            break
        match = _PARAM_NAME.match(rest, pos)
        if not match:
            raise HeaderParamError("invalid media parameter")
        name = match.group(1).lower()
        pos = _skip_space(rest, match.end())
        if pos < len(rest) and rest[pos] == '"':
            text, pos = _quoted_string(rest, pos)
        else:
            end = rest.find(";", pos)
            end = len(rest) if end < 0 else end
            text = rest[pos:end].strip()
            pos = end
            if not text:
                raise HeaderParamError("invalid media parameter")
        pos = _skip_space(rest, pos)
        if pos < len(rest):
            if rest[pos] != ";":
                raise HeaderParamError("invalid media parameter")
            pos += 1
        target = extended if name.endswith("*") else params
        if name.rstrip("*") in target:
            raise HeaderParamError(f"duplicate parameter name {name.rstrip('*')}")
        target[name.rstrip("*")] = text
    for name, raw in extended.items():
        decoded = _decode_rfc2231(raw)
        if decoded is not None:
            params[name] = decoded
    return kind, params


_PARAM_NAME = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _quoted_string(text: str, pos: int) -> tuple[str, int]:
    out = []
    pos += 1
    while pos < len(text):
        ch = text[pos]
        if ch == "\\" and pos + 1 < len(text):
            out.append(text[pos + 1])
            pos += 2
        elif ch == '"':
            return "".join(out), pos + 1
        elif ch in "\r\n":
            break
        else:
            out.append(ch)
            pos += 1
    raise HeaderParamError("unterminated quoted string")


def _decode_rfc2231(raw: str) -> str | None:
    charset, sep, rest = raw.partition("'")
    _lang, sep2, encoded = rest.partition("'")
    if not (sep and sep2):
        return None
    charset = charset.lower()
    if charset not in ("utf-8", "us-ascii"):
        return None
    try:
        return unquote_to_bytes(encoded).decode(charset)
    except UnicodeDecodeError:
        return None


# Browsers, httpx and undici escape `"` as %22 and control characters as %XX in form-data filenames
# (HTML5 multipart encoding); only those escapes are undone, any other `%` is kept verbatim.
_HTML5_ESCAPE = re.compile(r"%(22|[01][0-9A-Fa-f])")


def unescape_form_filename(name: str) -> str:
    return _HTML5_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)
