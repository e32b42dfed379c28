"""Content-Type of downloads: by extension of the raw `path`, else by sniffing (spec/envd.md §3.6 step 12).

Mirrors Go's mime.TypeByExtension (builtin table first, then the system's mime.types, `charset=utf-8`
added to text types) and a subset of net/http.DetectContentType (the signatures files commonly have).
"""

from __future__ import annotations

import mimetypes
import posixpath

OCTET_STREAM = "application/octet-stream"
TEXT_PLAIN = "text/plain; charset=utf-8"

# Go's builtin table, which wins over the system's mime.types.
_GO_BUILTIN = {
    ".avif": "image/avif",
    ".css": "text/css; charset=utf-8",
    ".gif": "image/gif",
    ".htm": "text/html; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".mjs": "text/javascript; charset=utf-8",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".webp": "image/webp",
    ".xml": "text/xml; charset=utf-8",
}

_system: mimetypes.MimeTypes | None = None


def by_extension(raw_path: str) -> str | None:
    global _system
    ext = posixpath.splitext(raw_path)[1]
    if not ext:
        return None
    found = _GO_BUILTIN.get(ext) or _GO_BUILTIN.get(ext.lower())
    if found:
        return found
    if _system is None:
        _system = mimetypes.MimeTypes()
    found = _system.types_map[True].get(ext) or _system.types_map[True].get(ext.lower())
    if found and found.startswith("text/") and "charset" not in found:
        found += "; charset=utf-8"
    return found


_HTML_TAGS = (
    b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV", b"<FONT",
    b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P", b"<!--",
)

_EXACT = (
    (b"%PDF-", "application/pdf"),
    (b"%!PS-Adobe-", "application/postscript"),
    (b"\xfe\xff", "text/plain; charset=utf-16be"),
    (b"\xff\xfe", "text/plain; charset=utf-16le"),
    (b"\xef\xbb\xbf", TEXT_PLAIN),
    (b"\x00\x00\x01\x00", "image/x-icon"),
    (b"\x00\x00\x02\x00", "image/x-icon"),
    (b"BM", "image/bmp"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"OggS\x00", "application/ogg"),
    (b"\x1f\x8b\x08", "application/x-gzip"),
    (b"PK\x03\x04", "application/zip"),
    (b"Rar!\x1a\x07\x00", "application/x-rar-compressed"),
    (b"Rar!\x1a\x07\x01\x00", "application/x-rar-compressed"),
    (b"\x00asm", "application/wasm"),
    (b"\x7fELF", OCTET_STREAM),
)

_BINARY = frozenset(b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17"
                    b"\x18\x19\x1a\x1c\x1d\x1e\x1f")


def sniff(head: bytes) -> str:
    """Content type of the first bytes of a file (at most 512 are looked at)."""
    data = head[:512]
    stripped = data.lstrip(b"\t\n\x0c\r ")
    upper = stripped[:16].upper()
    for tag in _HTML_TAGS:
        if upper.startswith(tag) and len(stripped) > len(tag) and stripped[len(tag)] in b" >":
            return "text/html; charset=utf-8"
    if stripped.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    for signature, kind in _EXACT:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:14] == b"WEBPVP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:11] in (b"mp4", b"iso", b"M4V", b"avc"):
        return "video/mp4"
    if any(byte in _BINARY for byte in data):
        return OCTET_STREAM
    return TEXT_PLAIN
