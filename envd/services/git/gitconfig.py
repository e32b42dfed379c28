"""git config get/set in the three scopes git has, as the request user (global = their ~/.gitconfig)."""

from __future__ import annotations

import os

from ...errors import InvalidArgument
from .repository import SYSTEM_CONFIG, open_repository

SCOPES = ("global", "local", "system")


def parse_key(key: str) -> tuple[tuple[bytes, ...], bytes]:
    """`section[.subsection].name` (subsections may contain dots) -> (section tuple, name)."""
    section, dot, rest = key.partition(".")
    if not dot or not section or not rest:
        raise InvalidArgument(f"invalid config key '{key}': expected section.name")
    subsection, _, name = rest.rpartition(".")
    if not name:
        raise InvalidArgument(f"invalid config key '{key}': missing the variable name")
    sections = (section.encode(), subsection.encode()) if subsection else (section.encode(),)
    return sections, name.encode()


def _file_path(scope: str, home: str) -> str:
    return os.path.join(home, ".gitconfig") if scope == "global" else SYSTEM_CONFIG


def get_config(scope: str, path: str, home: str, key: str) -> str | None:
    from dulwich.config import ConfigFile

    section, name = parse_key(key)
    if scope == "local":
        with open_repository(path) as repo:
            config = repo.get_config()
    else:
        try:
            config = ConfigFile.from_path(_file_path(scope, home))
        except FileNotFoundError:
            return None
    try:
        return config.get(section, name).decode("utf-8", "replace")
    except KeyError:
        return None


def set_config(scope: str, path: str, home: str, key: str, value: str) -> None:
    from dulwich.config import ConfigFile

    section, name = parse_key(key)
    if scope == "local":
        with open_repository(path) as repo:
            config = repo.get_config()
            config.set(section, name, value.encode())
            config.write_to_path()
        return
    file_path = _file_path(scope, home)
    try:
        config = ConfigFile.from_path(file_path)
    except FileNotFoundError:
        config = ConfigFile()
        config.path = file_path
    config.set(section, name, value.encode())
    config.write_to_path()
