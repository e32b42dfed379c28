"""Per-call HTTP credentials: handed to dulwich's transport for one call, never written or logged.

dulwich stores the URL it was given as `remote.<name>.url`, so a URL carrying `user:password@` is split first:
the credentials go to the transport, the clean URL to the config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never in a log line or traceback
        return f"Credentials(username={self.username!r}, password=***)"

    def transport_kwargs(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}


def split_url(url: str) -> tuple[str, Credentials | None]:
    """(url without userinfo, the credentials it carried) for http(s) URLs; other URLs are returned as given."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    clean = urlunsplit(parts._replace(netloc=host))
    return clean, Credentials(unquote(username), unquote(password))


def has_credentials(url: str) -> bool:
    return split_url(url)[1] is not None


def redact(text: str) -> str:
    """An error text that may quote a URL, with any userinfo masked."""
    return re.sub(r"(https?://)[^/@\s]+@", r"\1***@", text)


def transport_kwargs(credentials: Credentials | None) -> dict[str, str]:
    return credentials.transport_kwargs() if credentials else {}
