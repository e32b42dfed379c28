"""OS users: lookup by name and the HTTP Basic username carried on RPCs (spec/envd.md §2.4-2.5)."""

from __future__ import annotations

import base64
import grp
import os
import pwd
from dataclasses import dataclass


class UnknownUser(LookupError):
    pass


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str

    def groups(self) -> list[int]:
        """Supplementary groups, as a login would get them."""
        return os.getgrouplist(self.name, self.gid)


def lookup_user(name: str) -> User:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UnknownUser(f"user: unknown user {name}") from None
    return User(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def parse_basic_username(header: str | None) -> str | None:
    """`Basic base64("<user>:")` -> user; None when absent or not parseable as Basic."""
    if not header:
        return None
    scheme, _, payload = header.strip().partition(" ")
    if scheme.lower() != "basic" or not payload:
        return None
    try:
        decoded = base64.b64decode(payload.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    username, sep, _password = decoded.partition(":")
    return username if sep else None
