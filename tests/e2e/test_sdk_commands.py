"""`sandbox.commands` and `sandbox.pty` through the unmodified Python SDK (e2b 2.63) in debug mode.

What the SDK sends is in sdk-expectations.md §3.1/§3.2/§1.10 (Start with `/bin/bash -l -c <cmd>`, PTY with
`/bin/bash -i -l`, SendInput/CloseStdin/SendSignal/Update/List/Connect as unary or server-stream Connect JSON);
what envd must do with it is envd.md §6. Default user `user`; `kill -0` is checked locally (we are root) so a
killed child must really be gone (reaped), not a zombie.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2b import (
    AsyncSandbox,
    CommandExitException,
    InvalidArgumentException,
    NotFoundException,
    PtySize,
    Sandbox,
    TimeoutException,
)

from tests.pids import alive, wait_gone

pytestmark = pytest.mark.sdk


@pytest.fixture(scope="module")
def sbx(debug_env) -> Sandbox:
    return Sandbox.create()


@pytest.fixture(scope="module")
def scratch(sandbox_user) -> Iterator[Path]:
    pw = pwd.getpwnam(sandbox_user)
    d = Path(pw.pw_dir) / f"envd-cmd-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    os.chown(d, pw.pw_uid, pw.pw_gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


# --- commands.run -------------------------------------------------------------------------------------------


def test_run_foreground_collects_stdout_and_stderr(sbx):
    result = sbx.commands.run("echo hello; echo oops >&2")
    assert (result.stdout, result.stderr, result.exit_code, result.error) == ("hello\n", "oops\n", 0, None)


def test_run_background_returns_a_handle_at_once(sbx):
    begin = time.monotonic()
    handle = sbx.commands.run("sleep 0.5; echo late", background=True)
    assert time.monotonic() - begin < 0.4, "background run must return after the start event, not the end"
    assert handle.pid > 0 and alive(handle.pid)
    result = handle.wait()
    assert (result.stdout, result.exit_code) == ("late\n", 0)
    assert wait_gone(handle.pid)


def test_start_pid_is_the_real_os_pid_of_the_command(sbx):
    # §6.3: the exec wrapper makes the user command replace /bin/sh, so $$ of the bash is the reported pid.
    handle = sbx.commands.run("echo $$; sleep 0.3", background=True)
    assert handle.wait().stdout == f"{handle.pid}\n"


def test_envs_apply_to_one_command_only(sbx):
    assert sbx.commands.run("echo $FOO-$BAR", envs={"FOO": "bar", "BAR": "baz qux"}).stdout == "bar-baz qux\n"
    assert sbx.commands.run("echo \"[$FOO]\"").stdout == "[]\n"


def test_request_envs_override_home_and_user(sbx):
    # §6.3 environment order: request envs override HOME/USER/LOGNAME.
    out = sbx.commands.run("echo $HOME $USER", envs={"HOME": "/tmp", "USER": "someone"}).stdout
    assert out == "/tmp someone\n"


def test_environment_is_built_not_inherited(sbx):
    # §6.3: PATH, HOME, USER, LOGNAME + the env store (E2B_SANDBOX=false in local mode); no TERM etc. from envd.
    # (bash gives itself an unexported TERM=dumb, so ask printenv what the environment holds.)
    out = sbx.commands.run('echo "$HOME|$USER|$LOGNAME|$E2B_SANDBOX|$(printenv TERM LANG SHELL || echo unset)"').stdout
    assert out == "/home/user|user|user|false|unset\n"
    assert sbx.commands.run("echo $PATH").stdout.strip() != ""


def test_cwd(sbx, scratch):
    assert sbx.commands.run("pwd").stdout == "/home/user\n"  # no default workdir -> home (§6.2 step 4)
    assert sbx.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert sbx.commands.run("pwd", cwd=str(scratch)).stdout == f"{scratch}\n"
    # Relative cwd resolves against the user's home (§5).
    assert sbx.commands.run("pwd", cwd=scratch.name).stdout == f"{scratch}\n"
    assert sbx.commands.run("pwd", cwd="~").stdout == "/home/user\n"


def test_missing_cwd_is_invalid_argument(sbx, scratch):
    missing = scratch / "nope"
    with pytest.raises(InvalidArgumentException) as err:
        sbx.commands.run("pwd", cwd=str(missing))
    assert f"cwd '{missing}' does not exist" in str(err.value)


@pytest.mark.parametrize(
    ("user", "home", "uid"),
    [(None, "/home/user", 1001), ("user", "/home/user", 1001), ("root", "/root", 0)],
)
def test_user(sbx, user, home, uid):
    result = sbx.commands.run('id -un; echo "$HOME"; id -u; pwd', user=user)
    name = user or "user"
    assert result.stdout == f"{name}\n{home}\n{uid}\n{home}\n"


def test_user_gets_supplementary_groups(sbx):
    # §6.4: primary gid + every /etc/group entry listing the user (the sandbox account is in sudo).
    groups = sbx.commands.run("id -Gn").stdout.split()
    expected = {g.gr_name for g in __import__("grp").getgrall() if "user" in g.gr_mem} | {"user"}
    assert set(groups) == expected


def test_unknown_user_is_an_authentication_error(sbx):
    from e2b import AuthenticationException

    with pytest.raises(AuthenticationException):
        sbx.commands.run("true", user="no-such-user-xyz")


def test_exit_code_raises_command_exit_exception(sbx):
    with pytest.raises(CommandExitException) as err:
        sbx.commands.run("echo out; echo err >&2; exit 3")
    e = err.value
    assert (e.stdout, e.stderr, e.exit_code, e.error) == ("out\n", "err\n", 3, "exit status 3")


def test_background_wait_raises_on_nonzero_exit(sbx):
    handle = sbx.commands.run("exit 42", background=True)
    with pytest.raises(CommandExitException) as err:
        handle.wait()
    assert (err.value.exit_code, err.value.error) == (42, "exit status 42")


def test_command_not_found_is_127(sbx):
    # §6.2: a missing command does not fail Start; the shell reports it and exits 127.
    with pytest.raises(CommandExitException) as err:
        sbx.commands.run("definitely-not-a-command-4711")
    assert err.value.exit_code == 127
    assert "definitely-not-a-command-4711" in err.value.stderr and "not found" in err.value.stderr


def test_timeout_raises_and_kills_the_process(sbx):
    # §6.6: Connect-Timeout-Ms on Start is the process lifetime; SIGKILL at expiry, stream ends deadline_exceeded.
    pids: list[int] = []
    begin = time.monotonic()
    with pytest.raises(TimeoutException):
        sbx.commands.run("echo $$; exec sleep 30", timeout=1, on_stdout=lambda s: pids.append(int(s)))
    elapsed = time.monotonic() - begin
    assert 0.9 < elapsed < 5, elapsed
    assert len(pids) == 1
    assert wait_gone(pids[0]), f"pid {pids[0]} still exists after the timeout (state {proc_state(pids[0])})"


def test_timeout_kills_a_background_command_nobody_watches(sbx):
    handle = sbx.commands.run("sleep 30", background=True, timeout=1.5)
    pid = handle.pid
    handle.disconnect()
    time.sleep(0.5)
    assert alive(pid), "disconnecting must not kill the process (§6.2)"
    assert wait_gone(pid, timeout=5), f"lifetime limit did not kill pid {pid} (state {proc_state(pid)})"


def test_timeout_zero_is_unlimited(sbx):
    handle = sbx.commands.run("sleep 1; echo done", background=True, timeout=0)
    assert handle.wait().stdout == "done\n"


def test_on_stdout_and_on_stderr_in_order(sbx):
    events: list[tuple[str, str]] = []
    result = sbx.commands.run(
        "for i in 1 2 3; do echo out$i; sleep 0.1; echo err$i >&2; sleep 0.1; done",
        on_stdout=lambda s: events.append(("out", s)),
        on_stderr=lambda s: events.append(("err", s)),
    )
    assert events == [
        ("out", "out1\n"), ("err", "err1\n"), ("out", "out2\n"),
        ("err", "err2\n"), ("out", "out3\n"), ("err", "err3\n"),
    ]
    assert (result.stdout, result.stderr) == ("out1\nout2\nout3\n", "err1\nerr2\nerr3\n")


def test_output_is_forwarded_as_soon_as_it_is_read(sbx):
    stamps: list[float] = []
    begin = time.monotonic()
    sbx.commands.run("echo a; sleep 1; echo b", on_stdout=lambda s: stamps.append(time.monotonic() - begin))
    assert len(stamps) == 2 and stamps[0] < 0.7 and stamps[1] >= 0.9, stamps


def test_large_output_is_byte_exact(sbx, scratch):
    # 75 MB of random bytes -> exactly 100,000,000 base64 characters; sha256 computed in the sandbox.
    f = scratch / "big.b64"
    result = sbx.commands.run(
        f"head -c 75000000 /dev/urandom | base64 -w0 > {f}; sha256sum < {f} | cut -d' ' -f1 >&2; cat {f}; rm {f}",
        timeout=120,
    )
    import hashlib

    assert len(result.stdout) == 100_000_000
    assert hashlib.sha256(result.stdout.encode()).hexdigest() == result.stderr.strip()


def test_invalid_utf8_becomes_replacement_characters(sbx):
    # The SDK decodes each stream incrementally with errors="replace" (§3.1); envd must pass bytes through verbatim.
    raw = b"a\xff\xfeb\xe2\x82"
    result = sbx.commands.run(r"printf 'a\377\376b\342\202'")
    assert result.stdout == raw.decode("utf-8", errors="replace") == "a\ufffd\ufffdb\ufffd"


def test_multibyte_character_split_across_reads(sbx):
    chunks: list[str] = []
    result = sbx.commands.run(r"printf '\342\202'; sleep 0.3; printf '\254\n'", on_stdout=chunks.append)
    assert result.stdout == "\u20ac\n"
    assert "\ufffd" not in "".join(chunks)


def test_stdin_is_off_by_default(sbx):
    # SDKs send stdin=false unless asked (§6.3): `cat` sees /dev/null and ends at once.
    begin = time.monotonic()
    result = sbx.commands.run("cat; echo done", timeout=10)
    assert result.stdout == "done\n"
    assert time.monotonic() - begin < 3


def test_send_stdin_and_close_stdin(sbx):
    chunks: list[str] = []
    handle = sbx.commands.run("cat", background=True, stdin=True)
    got_first = threading.Event()
    outcome: dict = {}

    def consume():
        try:
            outcome["result"] = handle.wait(on_stdout=lambda s: (chunks.append(s), got_first.set()))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    sbx.commands.send_stdin(handle.pid, "hello from stdin\n")
    assert got_first.wait(5), "cat's echo of the input never arrived"
    assert chunks == ["hello from stdin\n"], "one send_stdin to cat comes back as one chunk (§3.1)"
    sbx.commands.send_stdin(handle.pid, b"\x00bytes\xff")
    sbx.commands.close_stdin(handle.pid)
    t.join(10)
    assert not t.is_alive(), "cat did not end after close_stdin"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].exit_code == 0
    assert outcome["result"].stdout == "hello from stdin\n\x00bytes\ufffd"


def test_close_stdin_delivers_eof_to_wc(sbx):
    handle = sbx.commands.run("wc -c; sleep 1", background=True, stdin=True)
    for _ in range(3):
        handle.send_stdin(b"x" * 1000)
    handle.close_stdin()
    handle.close_stdin()  # idempotent while the process lives (§6.11)
    assert handle.wait().stdout.strip() == "3000"


def test_stream_input(sbx):
    # Python-only client stream (StreamInput, §6.10): chunks arrive in order; the response follows the last one.
    handle = sbx.commands.run("cat", background=True, stdin=True)
    sbx.commands.stream_input(handle.pid, iter(["one ", b"two ", "three\n"]))
    handle.close_stdin()
    assert handle.wait().stdout == "one two three\n"


def test_iterating_a_handle_and_not_retaining_output(sbx):
    handle = sbx.commands.run("echo a; echo b >&2; echo c", background=True, retain_output=False)
    seen = [(out, err) for out, err, _ in handle]
    assert "".join(o for o, _ in seen if o) == "a\nc\n" and [e for _, e in seen if e] == ["b\n"]
    result = handle.wait()
    assert (result.exit_code, result.stdout, result.stderr) == (0, None, None)


def test_send_stdin_without_stdin_is_an_error(sbx):
    handle = sbx.commands.run("sleep 5", background=True)
    try:
        with pytest.raises(Exception) as err:
            sbx.commands.send_stdin(handle.pid, "x")
        assert "stdin not enabled or closed" in str(err.value)
    finally:
        handle.kill()


def test_list_shows_running_commands(sbx, scratch):
    handle = sbx.commands.run("sleep 30", background=True, envs={"MARK": "listed"}, cwd=str(scratch))
    try:
        mine = [p for p in sbx.commands.list() if p.pid == handle.pid]
        assert len(mine) == 1
        info = mine[0]
        assert (info.cmd, info.args, info.envs, info.cwd, info.tag) == (
            "/bin/bash", ["-l", "-c", "sleep 30"], {"MARK": "listed"}, str(scratch), None,
        )
    finally:
        assert handle.kill() is True
    with pytest.raises(CommandExitException):
        handle.wait()
    assert handle.pid not in [p.pid for p in sbx.commands.list()]


def test_kill_returns_true_then_false(sbx):
    handle = sbx.commands.run("sleep 30", background=True)
    assert sbx.commands.kill(handle.pid) is True
    with pytest.raises(CommandExitException) as err:
        handle.wait()
    # §6.5: killed by a signal -> exit code -1, error "signal: killed".
    assert (err.value.exit_code, err.value.error) == (-1, "signal: killed")
    assert wait_gone(handle.pid), f"killed pid {handle.pid} was not reaped (state {proc_state(handle.pid)})"
    assert sbx.commands.kill(handle.pid) is False


def test_kill_of_unknown_pid_is_false(sbx):
    assert sbx.commands.kill(4_000_000) is False


def test_kill_ends_the_stream_even_if_a_descendant_holds_stdout(sbx):
    # §6.11: after SIGKILL via SendSignal envd stops waiting for output EOF (the orphaned sleep keeps stdout open).
    seen = threading.Event()
    orphans: list[int] = []
    handle = sbx.commands.run("sleep 30 & echo $!; wait", background=True)
    outcome: dict = {}

    def consume():
        try:
            handle.wait(on_stdout=lambda s: (orphans.append(int(s)), seen.set()))
        except CommandExitException as exc:
            outcome["error"] = exc

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert seen.wait(5)
    begin = time.monotonic()
    assert handle.kill() is True
    t.join(5)
    try:
        assert not t.is_alive(), "no end event while a descendant still holds stdout after SIGKILL"
        assert time.monotonic() - begin < 3
        assert outcome["error"].exit_code == -1
    finally:
        for pid in orphans:
            os.kill(pid, 9)


def test_connect_from_a_second_client_sees_later_output(sbx, debug_env):
    first_seen = threading.Event()
    outcome: dict = {}
    handle = sbx.commands.run("echo first; while read l; do echo got:$l; done", background=True, stdin=True)

    def consume():
        try:
            outcome["result"] = handle.wait(
                on_stdout=lambda s: first_seen.set() if "first" in s else None
            )
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert first_seen.wait(5)

    other = Sandbox.create()  # a separate client: its own transport and connections
    second = other.commands.connect(handle.pid)
    assert second.pid == handle.pid
    sbx.commands.send_stdin(handle.pid, "x\n")
    other.commands.send_stdin(handle.pid, "y\n")
    other.commands.close_stdin(handle.pid)
    result = second.wait()
    # No replay for late subscribers (§6.5): "first" was produced before the Connect.
    assert result.stdout == "got:x\ngot:y\n"
    t.join(10)
    assert outcome["result"].stdout == "first\ngot:x\ngot:y\n"


def test_connect_after_disconnect_reattaches(sbx):
    handle = sbx.commands.run("for i in $(seq 1 12); do echo tick$i; sleep 0.1; done", background=True)
    handle.disconnect()
    time.sleep(0.3)
    again = sbx.commands.connect(handle.pid)
    result = again.wait()
    assert result.exit_code == 0 and "tick12\n" in result.stdout and "tick1\n" not in result.stdout


def test_connect_to_unknown_pid_is_not_found(sbx):
    with pytest.raises(NotFoundException):
        sbx.commands.connect(4_000_000)


# --- PTY ----------------------------------------------------------------------------------------------------


class Terminal:
    """Reads a PTY handle in a thread; `expect` waits for a pattern in output not yet consumed."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.buffer = bytearray()
        self.pos = 0
        self.cond = threading.Condition()
        self.result = None
        self.error: Exception | None = None
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            self.result = self.handle.wait(on_pty=self._data)
        except Exception as exc:  # noqa: BLE001 - inspected by tests
            self.error = exc
        finally:
            self.done.set()
            with self.cond:
                self.cond.notify_all()

    def _data(self, chunk: bytes) -> None:
        with self.cond:
            self.buffer += chunk
            self.cond.notify_all()

    def expect(self, pattern: bytes, timeout: float = 10.0) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                match = regex.search(self.buffer, self.pos)
                if match:
                    self.pos = match.end()
                    return match
                left = deadline - time.monotonic()
                if left <= 0 or self.done.is_set():
                    raise AssertionError(f"{pattern!r} not seen; terminal said: {bytes(self.buffer[self.pos:])!r}")
                self.cond.wait(left)


def test_pty_create_input_and_resize(sbx):
    handle = sbx.pty.create(PtySize(rows=24, cols=80))
    term = Terminal(handle)
    try:
        sbx.pty.send_stdin(handle.pid, b'echo "S:$(stty size):$TERM:$LANG:E"\n')
        assert term.expect(rb"S:(\d+ \d+):([^:]*):([^:]*):E").groups() == (b"24 80", b"xterm-256color", b"C.UTF-8")
        sbx.pty.resize(handle.pid, PtySize(rows=30, cols=100))
        sbx.pty.send_stdin(handle.pid, b'echo "S:$(stty size):$(tput cols):E"\n')
        assert term.expect(rb"S:(\d+ \d+):(\d+):E").groups() == (b"30 100", b"100")
        sbx.pty.send_stdin(handle.pid, b'echo "W:$(id -un):$(tty):$$:E"\n')
        name, tty, pid = term.expect(rb"W:(\w+):(/dev/pts/\d+):(\d+):E").groups()
        assert (name, int(pid)) == (b"user", handle.pid)
    finally:
        assert sbx.pty.kill(handle.pid) is True
    assert term.done.wait(5), "PTY stream did not end after kill"
    assert isinstance(term.error, CommandExitException) and term.error.exit_code == -1
    assert wait_gone(handle.pid)
    assert sbx.pty.kill(handle.pid) is False


def test_pty_exit_yields_exit_code_zero(sbx):
    handle = sbx.pty.create(PtySize(rows=24, cols=80), user="root", cwd="/tmp")
    term = Terminal(handle)
    sbx.pty.send_stdin(handle.pid, b'echo "W:$(id -un):$(pwd):E"\n')
    assert term.expect(rb"W:(\w+):(\S+):E").groups() == (b"root", b"/tmp")
    sbx.pty.send_stdin(handle.pid, b"exit\n")
    assert term.done.wait(10)
    assert term.error is None and term.result.exit_code == 0


def test_pty_ctrl_c_interrupts_the_foreground_job(sbx):
    handle = sbx.pty.create(PtySize(rows=24, cols=80))
    term = Terminal(handle)
    try:
        sbx.pty.send_stdin(handle.pid, b"sleep 30; echo after-$((1+1))\n")
        time.sleep(0.5)
        sbx.pty.send_stdin(handle.pid, b"\x03")
        sbx.pty.send_stdin(handle.pid, b"echo back-$((2+2))\n")
        term.expect(rb"back-4", timeout=5)
        assert b"after-2" not in term.buffer
    finally:
        sbx.pty.kill(handle.pid)


def test_pty_connect_from_a_second_client(sbx, debug_env):
    handle = sbx.pty.create(PtySize(rows=24, cols=80))
    term = Terminal(handle)
    other = Sandbox.create()
    second = Terminal(other.pty.connect(handle.pid))
    other.pty.send_stdin(handle.pid, b"echo $((6*7))X\n")
    term.expect(rb"42X")
    second.expect(rb"42X")
    sbx.pty.send_stdin(handle.pid, b"exit\n")
    assert term.done.wait(10) and second.done.wait(10)
    assert term.result.exit_code == 0 and second.result.exit_code == 0


def test_pty_stream_input(sbx):
    handle = sbx.pty.create(PtySize(rows=24, cols=80))
    term = Terminal(handle)
    try:
        sbx.pty.stream_input(handle.pid, iter([b"echo ", b"$((3*5))", b"Z\n"]))
        term.expect(rb"15Z")
    finally:
        sbx.pty.kill(handle.pid)


def test_pty_is_listed(sbx):
    handle = sbx.pty.create(PtySize(rows=24, cols=80))
    try:
        info = next(p for p in sbx.commands.list() if p.pid == handle.pid)
        assert (info.cmd, info.args) == ("/bin/bash", ["-i", "-l"])
        assert info.envs == {"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    finally:
        sbx.pty.kill(handle.pid)


def test_pty_resize_of_a_pipe_process_is_an_error(sbx):
    handle = sbx.commands.run("sleep 5", background=True)
    try:
        with pytest.raises(Exception) as err:
            sbx.pty.resize(handle.pid, PtySize(rows=10, cols=10))
        assert "tty not assigned to process" in str(err.value)
    finally:
        handle.kill()


# --- AsyncSandbox -------------------------------------------------------------------------------------------


def test_async_run_with_async_callbacks(debug_env):
    async def scenario():
        sandbox = await AsyncSandbox.create()
        events: list[tuple[str, str]] = []

        async def out(s):
            await asyncio.sleep(0)
            events.append(("out", s))

        result = await sandbox.commands.run(
            "echo a; sleep 0.1; echo b >&2", on_stdout=out, on_stderr=lambda s: events.append(("err", s))
        )
        assert events == [("out", "a\n"), ("err", "b\n")]
        assert (result.stdout, result.stderr, result.exit_code) == ("a\n", "b\n", 0)
        with pytest.raises(CommandExitException) as err:
            await sandbox.commands.run("echo x; exit 5", user="root")
        assert (err.value.exit_code, err.value.stdout) == (5, "x\n")

    asyncio.run(scenario())


def test_async_background_kill_and_timeout(debug_env):
    async def scenario():
        sandbox = await AsyncSandbox.create()
        handle = await sandbox.commands.run("sleep 30", background=True)
        assert await handle.kill() is True
        with pytest.raises(CommandExitException) as err:
            await handle.wait()
        assert err.value.exit_code == -1
        assert await sandbox.commands.kill(handle.pid) is False
        begin = time.monotonic()
        pids: list[int] = []
        with pytest.raises(TimeoutException):
            await sandbox.commands.run("echo $$; exec sleep 30", timeout=1.5, on_stdout=lambda s: pids.append(int(s)))
        assert time.monotonic() - begin < 5
        assert pids and await asyncio.to_thread(wait_gone, pids[0])

    asyncio.run(scenario())


def test_async_stdin_connect_and_concurrency(debug_env):
    async def scenario():
        sandbox = await AsyncSandbox.create()
        other = await AsyncSandbox.create()
        handle = await sandbox.commands.run("cat", background=True, stdin=True)
        seen: list[str] = []
        attached = await other.commands.connect(handle.pid, on_stdout=seen.append)
        await sandbox.commands.send_stdin(handle.pid, "ping\n")
        await other.commands.close_stdin(handle.pid)
        assert (await handle.wait()).stdout == "ping\n"
        assert (await attached.wait()).stdout == "ping\n" and seen == ["ping\n"]
        results = await asyncio.gather(*(sandbox.commands.run(f"echo {i}") for i in range(30)))
        assert [r.stdout for r in results] == [f"{i}\n" for i in range(30)]

    asyncio.run(scenario())


def test_async_pty(debug_env):
    async def scenario():
        sandbox = await AsyncSandbox.create()
        data = bytearray()
        grew = asyncio.Event()

        def on_data(chunk: bytes):
            data.extend(chunk)
            grew.set()

        async def expect(pattern: bytes) -> re.Match:
            async def loop():
                while not (m := re.search(pattern, data)):
                    grew.clear()
                    await grew.wait()
                return m

            return await asyncio.wait_for(loop(), 10)

        handle = await sandbox.pty.create(PtySize(rows=24, cols=80), on_data=on_data)
        await sandbox.pty.send_stdin(handle.pid, b'echo "S:$(stty size):E"\n')
        assert (await expect(rb"S:(\d+ \d+):E")).group(1) == b"24 80"
        await sandbox.pty.resize(handle.pid, PtySize(rows=40, cols=132))
        await sandbox.pty.send_stdin(handle.pid, b'echo "T:$(stty size):E"\n')
        assert (await expect(rb"T:(\d+ \d+):E")).group(1) == b"40 132"
        assert await sandbox.pty.kill(handle.pid) is True
        with pytest.raises(CommandExitException):
            await handle.wait()

    asyncio.run(scenario())
