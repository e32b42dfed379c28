"""/files routes: download, upload, compose (spec/envd.md §3.6-3.8). PLACEHOLDER, being written."""

from __future__ import annotations

from ..state import SandboxState


class FileRoutes:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self):
        return []
