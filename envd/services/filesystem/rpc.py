"""filesystem.Filesystem RPC adapter. PLACEHOLDER, being written."""

from __future__ import annotations

from ...state import SandboxState


class FilesystemService:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def close(self) -> None:
        pass
