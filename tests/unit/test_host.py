"""Host pieces used by /init: clock-sync thresholds (§3.4.3) and CA bundle install (§8.7)."""

import asyncio

import pytest

from envd.host.ca_bundle import CABundleInstaller
from envd.host.clock import needs_sync

MS = 1_000_000


@pytest.mark.parametrize(
    "offset_ms, expected",
    [(-51, True), (-50, False), (0, False), (4999, False), (5001, True)],
)
def test_clock_sync_thresholds(offset_ms, expected):
    host = 1_700_000_000_000 * MS
    assert needs_sync(host + offset_ms * MS, host) is expected


def test_ca_bundle_is_appended_once_and_persisted(tmp_path):
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_text("SYSTEM\n")
    persisted = tmp_path / "share" / "e2b-ca.crt"
    installer = CABundleInstaller(bundle=bundle, persisted=persisted)
    pem = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n\n\n"

    async def twice() -> None:
        await installer.install(pem)
        await installer.install(pem)  # same text again: nothing to do
        await installer.settled()  # the persisted copy is written in the background

    asyncio.run(twice())
    normalised = pem.rstrip("\n") + "\n"
    assert bundle.read_text() == "SYSTEM\n" + normalised
    assert persisted.read_text() == normalised
    assert persisted.stat().st_mode & 0o777 == 0o644


def test_ca_bundle_needs_an_existing_system_bundle(tmp_path):
    installer = CABundleInstaller(bundle=tmp_path / "missing.crt", persisted=tmp_path / "copy.crt")
    with pytest.raises(OSError):
        asyncio.run(installer.install("PEM"))
