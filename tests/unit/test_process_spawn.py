"""Spawning (spec/envd.md §6.2-6.4, §8.9): the exec wrapper, the environment, credentials, cwd, pipes and PTYs —
on real children started by the real Spawner."""

from __future__ import annotations

import asyncio
import os
import pwd
import select
import shutil
import threading
from pathlib import Path

import pytest

from envd.errors import InvalidArgument
from envd.services.process.spawn import (
    Child,
    Spawner,
    SpawnSpec,
    TerminalSize,
    build_wrapper,
    command_line,
    environment,
    wrapper_script,
)

USER = pwd.getpwnam("user")


def test_wrapper_has_each_tool_only_when_found() -> None:
    full = build_wrapper("/usr/bin/ionice", "/usr/bin/nice", 20)
    assert full == 'echo 100 > /proc/$$/oom_score_adj && exec /usr/bin/ionice -c 2 -n 4 /usr/bin/nice -n 20 "${@}"'
    assert build_wrapper(None, "/bin/nice", 0) == 'echo 100 > /proc/$$/oom_score_adj && exec /bin/nice -n 0 "${@}"'
    assert build_wrapper(None, None, 0) == 'echo 100 > /proc/$$/oom_score_adj && exec "${@}"'
    released = build_wrapper(None, None, 0, wait_release=True, cwd="/home/a b")
    assert released.startswith("read -r _ <&3 && exec 3<&- && cd -- '/home/a b' && unset OLDPWD && echo 100")


def test_tools_are_looked_up_on_the_given_path(tmp_path: Path, monkeypatch) -> None:
    from envd.services.process import spawn as spawn_module

    monkeypatch.setattr(spawn_module._FileDerived, "RECHECK_S", 0.0)  # re-stat PATH on every call
    assert "ionice" not in wrapper_script(str(tmp_path)) and "nice" not in wrapper_script(str(tmp_path)).split("exec")[1]
    nice = tmp_path / "nice"
    nice.write_text("#!/bin/sh\n")
    nice.chmod(0o755)
    assert f"{nice} -n {-os.nice(0)} " in wrapper_script(str(tmp_path))
    argv = command_line("ls", ["-l", "a b"], str(tmp_path))
    assert argv[:2] == ["/bin/sh", "-c"] and argv[3:] == ["--", "ls", "-l", "a b"]


def test_environment_is_built_from_scratch_later_entries_win() -> None:
    env = environment(
        "/usr/bin:/bin", "/home/u", "u",
        store={"E2B_SANDBOX": "true", "HOME": "/store-home"},
        request={"HOME": "/req-home", "A": "1"},
    )
    assert env == {"PATH": "/usr/bin:/bin", "HOME": "/req-home", "USER": "u", "LOGNAME": "u", "E2B_SANDBOX": "true", "A": "1"}


# -- real spawns ----------------------------------------------------------------------------------


def spec(script: str, **overrides) -> SpawnSpec:
    values = dict(
        argv=None,  # the spawner builds the §6.3 command line
        search_path=os.environ["PATH"],
        env=environment(os.environ["PATH"], USER.pw_dir, "user", {}, {}),
        cwd=USER.pw_dir,
        uid=USER.pw_uid,
        gid=USER.pw_gid,
        groups=None,
        username="user",
        cmd="/bin/sh",
        args=["-c", script],
    )
    values.update(overrides)
    return SpawnSpec(**values)


def read_all(fd: int) -> bytes:
    out = b""
    while True:
        select.select([fd], [], [], 10)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        except OSError:  # EIO: PTY closed
            return out
        if not data:
            return out
        out += data


def finish(child: Child) -> tuple[bytes, bytes, int]:
    """Collect everything the child printed and reap it; close every parent fd."""
    out = read_all(child.stdout if child.master is None else child.master)
    err = read_all(child.stderr) if child.stderr is not None else b""
    _, status = os.waitpid(child.pid, 0)
    for fd in (child.stdin, child.stdout, child.stderr, child.master, child.pidfd):
        if fd is not None:
            os.close(fd)
    return out, err, status


@pytest.fixture(scope="module")
def spawner():
    s = Spawner()
    yield s
    s.close()


def spawn(spawner: Spawner, s: SpawnSpec) -> Child:
    return asyncio.run(spawner.spawn(s))


def test_child_runs_as_the_user_with_priorities_and_only_its_three_fds(spawner) -> None:
    script = (
        "id -u; id -g; id -G; cat /proc/self/oom_score_adj; nice; ionice; pwd; ls /proc/self/fd; "
        "grep -E '^(CapEff|CapPrm)' /proc/self/status; env | sort"
    )
    child = spawn(spawner, spec(script))
    out, err, status = finish(child)
    assert status == 0, err
    lines = out.decode().splitlines()
    expected_groups = sorted(os.getgrouplist("user", USER.pw_gid))
    assert lines[0] == str(USER.pw_uid) and lines[1] == str(USER.pw_gid)
    assert sorted(int(g) for g in lines[2].split()) == expected_groups
    assert lines[3] == "100"  # §6.3 oom_score_adj
    assert lines[4] == "0"  # nice 0 whatever envd's niceness
    if shutil.which("ionice"):
        assert lines[5] == "best-effort: prio 4"
        lines.pop(5)
    assert lines[5] == USER.pw_dir
    assert lines[6:10] == ["0", "1", "2", "3"]  # 3 is ls's own directory fd: nothing of envd's leaked
    assert sorted(lines[10:12]) == ["CapEff:\t0000000000000000", "CapPrm:\t0000000000000000"]
    env = dict(line.split("=", 1) for line in lines[12:])
    env.pop("PWD", None), env.pop("SHLVL", None), env.pop("_", None)  # set by the shell itself
    assert env == {"PATH": os.environ["PATH"], "HOME": USER.pw_dir, "USER": "user", "LOGNAME": "user"}


def test_the_daemon_keeps_its_own_credentials_and_cwd(spawner, tmp_path: Path) -> None:
    before = (os.getresuid(), os.getresgid(), os.getgroups(), os.getcwd())
    finish(spawn(spawner, spec("true", cwd=str(tmp_path))))
    assert (os.getresuid(), os.getresgid(), os.getgroups(), os.getcwd()) == before
    seen = []
    thread = threading.Thread(target=lambda: seen.append((os.getresuid(), os.getgroups())))
    thread.start()
    thread.join()
    assert seen == [(before[0], before[2])]


def test_stdin_is_a_pipe_or_dev_null(spawner) -> None:
    child = spawn(spawner, spec("cat", stdin=True))
    os.set_blocking(child.stdin, True)
    os.write(child.stdin, b"piped\n")
    os.close(child.stdin)
    child.stdin = None
    out, _, status = finish(child)
    assert (out, status) == (b"piped\n", 0)
    child = spawn(spawner, spec("readlink /proc/self/fd/0; cat", stdin=False))
    assert child.stdin is None
    out, _, status = finish(child)
    assert (out, status) == (b"/dev/null\n", 0)


def test_cwd_is_checked_and_used(spawner, tmp_path: Path, user_home: Path) -> None:
    out, _, _ = finish(spawn(spawner, spec("pwd; echo $PWD", cwd=str(user_home))))
    assert out.decode().split() == [str(user_home)] * 2
    _, err, status = finish(spawn(spawner, spec("pwd", cwd=str(tmp_path))))  # root's private dir
    assert os.WEXITSTATUS(status) == 2 and b"can't cd" in err  # entered as the user, like Go after setuid
    with pytest.raises(InvalidArgument, match=f"^cwd '{tmp_path}/missing' does not exist$"):
        spawn(spawner, spec("pwd", cwd=str(tmp_path / "missing")))
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgument) as err:
        spawn(spawner, spec("pwd", cwd=str(tmp_path / "file")))
    assert err.value.message == "error starting process '/bin/sh -c pwd': fork/exec /bin/sh: not a directory"


def test_spawn_error_text_for_a_pty(spawner, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgument) as err:
        spawn(spawner, spec("true", cwd=str(tmp_path / "file"), pty=TerminalSize(cols=70000, rows=24)))
    assert err.value.message == (
        f"error starting pty with command '/bin/sh -c true' in dir '{tmp_path}/file' with '4464' cols and '24' rows: "
        "fork/exec /bin/sh: not a directory"
    )


def test_missing_command_is_the_shells_business(spawner) -> None:
    child = spawn(spawner, SpawnSpec(**{**spec("x").__dict__, "argv": command_line("/no/such/cmd", [], "/usr/bin:/bin")}))
    _, err, status = finish(child)
    assert os.WEXITSTATUS(status) == 127 and b"/no/such/cmd" in err


def test_pty_child_has_a_controlling_terminal_of_the_requested_size(spawner) -> None:
    child = spawn(spawner, spec("tty; stty size; ps -o sid= -p $$; echo $$; id -u", pty=TerminalSize(cols=123, rows=45)))
    assert child.stdout is None and child.stdin is None and child.master is not None
    out, _, status = finish(child)
    lines = out.decode().split("\r\n")
    assert status == 0
    assert lines[0].startswith("/dev/pts/")
    assert lines[1] == "45 123"
    assert lines[2].strip() == lines[3] == str(child.pid)  # session leader: its own new session
    assert lines[4] == str(USER.pw_uid)


def test_cgroup_placement_happens_before_the_command_runs(spawner, tmp_path: Path) -> None:
    procs = tmp_path / "cgroup.procs"  # a plain file stands in for the cgroup file
    procs.write_text("")
    marker = tmp_path / "ran"
    # As root: pytest's tmp_path is private to root.
    s = spec(f"cat {procs} > {marker}; ls /proc/self/fd", cgroup_procs=str(procs), uid=0, gid=0, username="root")
    child = spawn(spawner, s)
    out, err, status = finish(child)
    assert status == 0, err
    assert marker.read_text() == str(child.pid)  # written by envd before the shell went on
    assert out.split() == [b"0", b"1", b"2", b"3"]  # the release fd is gone (3 is ls's own)


def test_spawner_thread_reused_and_no_fd_leak(spawner) -> None:
    finish(spawn(spawner, spec("true")))
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        finish(spawn(spawner, spec("echo hi", stdin=True)))
        finish(spawn(spawner, spec("echo hi", pty=TerminalSize(80, 24))))
    assert len(os.listdir("/proc/self/fd")) == before
