"""Global mutable sandbox state ("defaults", spec/envd.md §1.5), shared by REST and RPC handlers."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field


class EnvStore:
    """Env vars injected into every process: internal entries (written by envd) win over user ones."""

    def __init__(self) -> None:
        self._internal: dict[str, str] = {}
        self._user: dict[str, str] = {}

    def set_internal(self, key: str, value: str) -> None:
        self._internal[key] = value
        self._user.pop(key, None)

    def replace_user(self, values: dict[str, str]) -> None:
        # /init replaces the whole user set; keys colliding with internal entries are ignored.
        self._user = {k: v for k, v in values.items() if k not in self._internal}

    def all(self) -> dict[str, str]:
        return {**self._user, **self._internal}


class AccessToken:
    """The access token; compared in constant time and never printed."""

    def __init__(self) -> None:
        self._value: bytes | None = None

    @property
    def is_set(self) -> bool:
        return self._value is not None

    def set(self, value: str | None) -> None:
        self._value = value.encode() if value is not None else None

    def matches(self, candidate: str | None) -> bool:
        if self._value is None or candidate is None:
            return False
        return hmac.compare_digest(self._value, candidate.encode())

    def reveal(self) -> str:
        """Only for computing URL signatures."""
        assert self._value is not None
        return self._value.decode()

    def __repr__(self) -> str:
        return f"AccessToken(set={self.is_set})"


@dataclass
class SandboxState:
    default_user: str = "root"
    default_workdir: str | None = None
    envs: EnvStore = field(default_factory=EnvStore)
    token: AccessToken = field(default_factory=AccessToken)
    initialized: bool = False
    # Highest /init timestamp applied so far, Unix ns (replay guard, §3.4.2 step 7).
    last_set_time: int = 0
    # Booted from a live-upgrade handover (§3.12): until /init only /health and /init pass the gate (§2.2).
    resumed: bool = False
