"""Trusting a CA bundle handed over by /init (spec/envd.md §8.7).

Synchronous part: append the PEM text to the system bundle (what openssl and Python's ssl read by default).
Background part, under the same lock and abandoned when a newer install superseded it: persist the text to
/usr/local/share/ca-certificates/e2b-ca.crt (so a later update-ca-certificates keeps it) and remove the
previously installed text from the bundle by an atomic rewrite.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from ..errors import Canceled, InvalidArgument
from .locks import acquire_unless

log = logging.getLogger("envd")

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PERSISTED_COPY = Path("/usr/local/share/ca-certificates/e2b-ca.crt")
PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


def normalise(pem: str) -> str:
    """§8.7 step 1: trailing newlines stripped, exactly one appended."""
    return pem.rstrip("\n") + "\n"


def check_pem(pem: str) -> None:
    """Refuse text that is not a bundle of parseable certificates, before anything is written.

    OpenSSL parses each block (ssl's cadata loader); the count check catches blocks it would skip.
    """
    import ssl  # lazily: only /init with a CA bundle needs it, start-up stays fast

    blocks = pem.count(PEM_BEGIN)
    if not blocks:
        raise InvalidArgument("caBundle holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' line)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError) as err:
        raise InvalidArgument(f"caBundle is not a valid PEM certificate bundle: {err}") from None
    loaded = context.cert_store_stats()["x509"]
    if loaded < blocks:
        raise InvalidArgument(f"caBundle: only {loaded} of {blocks} certificates could be parsed")


class CABundleInstaller:
    def __init__(self, bundle: Path = SYSTEM_BUNDLE, persisted: Path = PERSISTED_COPY) -> None:
        self.bundle = bundle
        self.persisted = persisted
        self._last: str | None = None  # the text this process installed last
        self._generation = 0
        self._lock = asyncio.Lock()
        self._background: asyncio.Task | None = None

    async def install(self, pem: str, cancelled: asyncio.Event | None = None) -> None:
        """Raises Canceled ("install already in progress", /init 503) or OSError (/init 400)."""
        text = normalise(pem)
        try:
            await acquire_unless(self._lock, cancelled, "CA lock")
        except Canceled:
            raise Canceled("CA install already in progress") from None
        try:
            if text == self._last:
                return
            await asyncio.to_thread(self._append, text)
            previous, self._last = self._last, text
            self._generation += 1
            self._background = asyncio.ensure_future(self._finish(text, previous, self._generation))
        finally:
            self._lock.release()

    def _append(self, text: str) -> None:
        # The system bundle must already exist (append, never create).
        with open(self.bundle, "r+") as bundle:
            bundle.seek(0, os.SEEK_END)
            bundle.write(text)

    async def _finish(self, text: str, previous: str | None, generation: int) -> None:
        async with self._lock:
            if generation != self._generation:
                return  # superseded: the newer install does this work
            try:
                await asyncio.to_thread(self._persist_and_prune, text, previous)
            except OSError as err:
                log.warning("CA bundle background step failed: %s", err)

    def _persist_and_prune(self, text: str, previous: str | None) -> None:
        self.persisted.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.persisted.write_text(text)
        os.chmod(self.persisted, 0o644)
        if previous is None:
            return
        current = self.bundle.read_text()
        pruned = current.replace(previous, "")
        if text not in pruned:
            pruned += text  # the previous text contained the new one: keep it trusted
        if pruned == current:
            return
        import tempfile  # lazily: start-up stays fast

        fd, tmp = tempfile.mkstemp(dir=self.bundle.parent, prefix=".ca-certificates.")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(pruned)
            os.chmod(tmp, 0o644)
            os.rename(tmp, self.bundle)
        except BaseException:
            os.unlink(tmp)
            raise

    async def settled(self) -> None:
        """Wait for the background step of the last install (tests, shutdown)."""
        if self._background is not None:
            await asyncio.shield(self._background)
