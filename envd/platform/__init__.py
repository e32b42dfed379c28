"""A local E2B-compatible control plane: sandboxes as QEMU microVMs started from saved VM states.

cli.py (`envd platform`) wires api.py (the E2B REST API) and proxy.py (E2B_SANDBOX_URL routing) to
sandboxes.py (lifecycle, warm pool, expiry, reclaim), templates.py (boot once, save) and qemu.py (one VM).
"""
