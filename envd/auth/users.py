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


class _UserDatabase:
    """pwd/grp lookups, memoised until /etc/passwd or /etc/group changes.

    Every RPC resolves its user and every EntryInfo names an owner and group; NSS re-reads the flat files
    on each call, which costs more than the stat that tells us whether they changed.
    """

    FILES = ("/etc/passwd", "/etc/group")

    def __init__(self) -> None:
        self._stamp: tuple | None = None
        self._cache: dict[tuple[str, object], object] = {}

    def _current(self) -> dict[tuple[str, object], object]:
        stamp = []
        for path in self.FILES:
            try:
                st = os.stat(path)
                stamp.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                stamp.append(None)
        if tuple(stamp) != self._stamp:
            self._stamp = tuple(stamp)
            self._cache = {}
        return self._cache

    def get(self, kind: str, key: object, compute) -> object:
        cache = self._current()
        try:
            return cache[(kind, key)]
        except KeyError:
            value = cache[(kind, key)] = compute(key)
            return value


_db = _UserDatabase()


def _user_by_name(name: str) -> User | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return User(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir)


def _name_of_uid(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _name_of_gid(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def lookup_user(name: str) -> User:
    user = _db.get("user", name, _user_by_name)
    if user is None:
        raise UnknownUser(f"user: unknown user {name}")
    return user


def user_name(uid: int) -> str:
    return _db.get("uid", uid, _name_of_uid)


def group_name(gid: int) -> str:
    return _db.get("gid", gid, _name_of_gid)


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
