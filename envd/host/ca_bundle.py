"""Trusting a CA bundle handed over by /init (spec/envd.md §8.7, synchronous part)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PERSISTED_COPY = Path("/usr/local/share/ca-certificates/e2b-ca.crt")


class CABundleInstaller:
    def __init__(self, bundle: Path = SYSTEM_BUNDLE, persisted: Path = PERSISTED_COPY) -> None:
        self.bundle = bundle
        self.persisted = persisted
        self._last: str | None = None
        self._lock = asyncio.Lock()

    async def install(self, pem: str) -> None:
        text = pem.rstrip("\n") + "\n"
        async with self._lock:
            if text == self._last:
                return
            await asyncio.to_thread(self._append, text)
            self._last = text

    def _append(self, text: str) -> None:
        # The system bundle must already exist (append, never create).
        with open(self.bundle, "r+") as bundle:
            bundle.seek(0, os.SEEK_END)
            bundle.write(text)
        self.persisted.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.persisted.write_text(text)
        os.chmod(self.persisted, 0o644)
