"""Starting a user process: command line, environment, credentials, cwd, PTY or pipes (spec/envd.md §6.2-6.4).

How a child is started, and why this way (start latency is benchmarked against spawning the same argv):

- `os.posix_spawn` (glibc: clone(CLONE_VM|CLONE_VFORK) + exec) instead of `subprocess.Popen`. Popen falls
  back from vfork to a full fork() of the daemon as soon as uid/gid/groups are given, and copying envd's
  page tables doubled the spawn time (3.5 ms against 1.7 ms measured); a Python `preexec_fn` costs more still.
- posix_spawn cannot change credentials, so the spawning thread takes the user's credentials itself for the
  duration of the call, with raw syscalls that (unlike glibc's wrappers) change only the calling thread:
  supplementary groups := the user's, real gid/uid := the user's while the effective ids stay root; the child
  then drops its effective ids to the real ones (POSIX_SPAWN_RESETIDS) and execs with uid = euid = suid = the
  user, no capabilities. The thread restores its ids right after; other threads never see the change.
  (For that instant the user could signal envd, which its sudo rights allow anyway.)
- The spawn runs on the event loop itself (~0.2 ms, most of it the kernel's vfork+exec): handing it to a
  thread and back cost more than the spawn (0.3 ms of hops measured on a 2-core VM).
- posix_spawn has no chdir either (glibc's addchdir_np is not exposed), and chdir is per process: the wrapper
  shell does `cd` instead, as the user (as Go's exec does it after setuid). envd checks beforehand, as root,
  that the directory exists (§6.2 step 4) — in a thread when a network/FUSE mount could make that hang.
- PTY: the child is a new session (POSIX_SPAWN_SETSID) and opens the terminal by name as its stdin — a
  session leader without a terminal that opens one gets it as controlling terminal, so no TIOCSCTTY (hence
  no preexec_fn) is needed. The child opens it after dropping privileges, so the pts is chowned to the user
  first, as login(1) does. `ptyprocess` was not used: it forks the interpreter (pty.fork) and cannot change
  credentials.
- cgroups (§8.9): the kernel's CLONE_INTO_CGROUP is not reachable from Python, and the child cannot move
  itself (cgroup.procs is root's, and the wrapper already runs as the user). So the wrapper shell first
  blocks reading fd 3; envd writes the pid into the target `cgroup.procs`, then releases it. The user's
  command therefore never runs in envd's cgroup; only the first instructions of /bin/sh do. A failed
  placement is logged and the command runs unplaced (as with the no-op manager) rather than not at all.
- The child gets exactly fds 0, 1, 2 (and 3 until released). Python opens everything close-on-exec (PEP 446),
  but not all fds are Python's: hypercorn marks its listening sockets inheritable, and envd may inherit
  strays from whoever started it. posix_spawn has no close_fds, so spawns first mark every open fd
  close-on-exec (a /proc/self/fd scan, repeated at most once a second).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import platform
import shlex
import shutil
import signal
import stat
import struct
import termios
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...errors import Internal, InvalidArgument
from ..filesystem.offload import Offload

log = logging.getLogger("envd.process")

SHELL = "/bin/sh"
OOM_SCORE_ADJ = 100  # §8.10
IONICE_ARGS = ("-c", "2", "-n", "4")  # best-effort, level 4
RELEASE_FD = 3

# Raw syscall numbers (per thread, unlike glibc's setxid broadcast).
_SYSCALLS = {
    "x86_64": {"setgroups": 116, "setresuid": 117, "setresgid": 119},
    "aarch64": {"setgroups": 159, "setresuid": 147, "setresgid": 149},
}
_DEFAULT_SIGNALS = tuple(sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}))


def build_wrapper(
    ionice: str | None, nice: str | None, nice_delta: int, wait_release: bool = False, cwd: str | None = None
) -> str:
    """§6.3: raise the OOM score, then exec the command under ionice/nice (each left out when missing)."""
    script = f"echo {OOM_SCORE_ADJ} > /proc/$$/oom_score_adj && exec "
    if cwd is not None:
        # cd exports OLDPWD (envd's own cwd): not ours to pass on. PWD the shell exports anyway, as upstream's.
        script = f"cd -- {shlex.quote(cwd)} && unset OLDPWD && " + script
    if ionice:
        script += f"{shlex.quote(ionice)} {' '.join(IONICE_ARGS)} "
    if nice:
        script += f"{shlex.quote(nice)} -n {nice_delta} "
    script += '"${@}"'
    if wait_release:
        # Block until envd has placed this pid in its cgroup (module docstring), then drop the fd.
        script = f"read -r _ <&{RELEASE_FD} && exec {RELEASE_FD}<&- && " + script
    return script


def _stamp(paths: list[str] | tuple[str, ...]) -> tuple:
    stamp = []
    for path in paths:
        try:
            st = os.stat(path)
            stamp.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            stamp.append(None)
    return tuple(stamp)


class _FileDerived:
    """A value computed from files, recomputed whenever one of them (or a directory listing) changes.

    PATH lookups and getgrouplist cost 100-200 µs each, a tenth of a whole spawn; the stats deciding
    whether they are still valid cost a few, and are themselves repeated at most every RECHECK_S.
    """

    RECHECK_S = 1.0

    def __init__(self) -> None:
        self._entries: dict[object, tuple[float, tuple, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: object, files: list[str] | tuple[str, ...], compute):
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self.RECHECK_S:
            return entry[2]
        stamp = _stamp(files)
        if entry is not None and entry[1] == stamp:
            value = entry[2]
        else:
            value = compute()
        with self._lock:
            self._entries[key] = (now, stamp, value)
        return value


_lookups = _FileDerived()


def find_tools(search_path: str) -> tuple[str | None, str | None]:
    """ionice and nice on `search_path`, as found now (§6.3): re-searched whenever a PATH directory changes."""
    return _lookups.get(
        ("tools", search_path),
        search_path.split(os.pathsep),
        lambda: (shutil.which("ionice", path=search_path), shutil.which("nice", path=search_path)),
    )


def wrapper_script(search_path: str | None = None, wait_release: bool = False, cwd: str | None = None) -> str:
    """The wrapper as of now: ionice/nice looked up on `search_path` (envd's PATH), Δ from envd's niceness."""
    path = search_path if search_path is not None else os.environ.get("PATH", os.defpath)
    # Δ brings the child back to nice 0 from envd's own niceness (-20 under the unit).
    return build_wrapper(*find_tools(path), -os.nice(0), wait_release, cwd)


def command_line(
    cmd: str, args: list[str], search_path: str, wait_release: bool = False, cwd: str | None = None
) -> list[str]:
    """`/bin/sh -c <wrapper> -- cmd args…`, tools looked up at Start time (§6.3)."""
    return [SHELL, "-c", wrapper_script(search_path, wait_release, cwd), "--", cmd, *args]


def environment(
    search_path: str, home: str, username: str, store: Mapping[str, str], request: Mapping[str, str]
) -> dict[str, str]:
    """§6.3: built from scratch; later entries override earlier ones. Nothing else is inherited."""
    env = {"PATH": search_path, "HOME": home, "USER": username, "LOGNAME": username}
    env.update(store)
    env.update(request)
    return env


@dataclass(frozen=True)
class TerminalSize:
    cols: int
    rows: int

    def packed(self) -> bytes:
        # struct winsize {rows, cols, xpixel, ypixel}; §6.3: values truncated to 16 bits.
        return struct.pack("HHHH", self.rows & 0xFFFF, self.cols & 0xFFFF, 0, 0)


def set_window_size(fd: int, size: TerminalSize) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, size.packed())


@dataclass(frozen=True)
class SpawnSpec:
    argv: list[str] | None  # None: the §6.3 command line for cmd/args, built in the spawn thread
    env: dict[str, str]
    cwd: str
    uid: int
    gid: int
    groups: list[int] | None  # None: the user's, read from /etc/group (§6.4)
    username: str = ""
    pty: TerminalSize | None = None
    stdin: bool = True  # pipe mode only: a pipe, else /dev/null
    cgroup_procs: str | None = None  # cgroup.procs to place the child in; None = stay in envd's
    search_path: str = os.defpath  # envd's PATH, where the wrapper's tools are looked up
    # For error messages: what the caller asked to run.
    cmd: str = ""
    args: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return " ".join([self.cmd, *self.args])


@dataclass
class Child:
    """A spawned, not yet reaped child and the parent's ends of its I/O (all non-blocking, close-on-exec)."""

    pid: int
    pidfd: int | None
    stdin: int | None = None  # pipe mode with stdin: write end
    stdout: int | None = None
    stderr: int | None = None
    master: int | None = None  # PTY mode: the terminal master (input and output)


def supplementary_groups(username: str, gid: int) -> list[int]:
    """§6.4: the primary gid plus every /etc/group entry listing the user; just the gid if that fails."""

    def compute() -> list[int]:
        try:
            return os.getgrouplist(username, gid)
        except OSError as err:
            log.warning("cannot read the groups of %s: %s", username, err)
            return [gid]

    return list(_lookups.get(("groups", username, gid), ("/etc/group",), compute))


_SCAN_EVERY_S = 1.0
_last_scan = -_SCAN_EVERY_S


def _close_on_exec_all(force: bool = False) -> None:
    """Mark every open fd close-on-exec. Inheritable fds come from start-up (hypercorn's listeners, whatever
    envd inherited), not from envd at run time, so the scan — O(open fds), costly with hundreds of
    connections — runs at most once a second."""
    global _last_scan
    now = time.monotonic()
    if not force and now - _last_scan < _SCAN_EVERY_S:
        return
    _last_scan = now
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
            except OSError:
                pass  # the listdir fd itself, or one closed meanwhile


def _go_error(err: OSError) -> str:
    # Go's exec error text: "fork/exec /bin/sh: no such file or directory".
    text = os.strerror(err.errno) if err.errno else str(err)
    return f"fork/exec {SHELL}: {text[:1].lower()}{text[1:]}"


class _ThreadCredentials:
    """Switch the *calling thread's* supplementary groups and real uid/gid (effective stays root)."""

    def __init__(self) -> None:
        numbers = _SYSCALLS.get(platform.machine())
        self._nr = numbers
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long

    def available(self) -> bool:
        return self._nr is not None

    def _call(self, name: str, *args) -> None:
        assert self._nr is not None
        if self._libc.syscall(self._nr[name], *args) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def set_groups(self, groups: list[int]) -> None:
        array = (ctypes.c_uint * max(len(groups), 1))(*groups)
        self._call("setgroups", ctypes.c_size_t(len(groups)), array)

    def set_real_ids(self, uid: int, gid: int) -> None:
        keep = ctypes.c_uint(0xFFFFFFFF)  # -1: unchanged
        self._call("setresgid", ctypes.c_uint(gid), keep, keep)
        self._call("setresuid", ctypes.c_uint(uid), keep, keep)



def check_cwd(cwd: str) -> OSError | None:
    """§6.2 step 4: a missing cwd is invalid_argument; a cwd that is not a directory fails like Go's spawn."""
    try:
        st = os.stat(cwd)
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidArgument(f"cwd '{cwd}' does not exist") from None
    except OSError as err:
        return err
    if not stat.S_ISDIR(st.st_mode):
        return NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    return None


class Spawner:
    """Spawns children with posix_spawn on the calling (event-loop) thread; see the module docstring."""

    def __init__(self, offload: Offload | None = None) -> None:
        self._creds = _ThreadCredentials()
        self._root = os.geteuid() == 0
        self._own_groups = os.getgroups()
        self._cgroup_fds: dict[str, int] = {}
        self._offload = offload or Offload()

    async def spawn(self, spec: SpawnSpec) -> Child:
        problem = await self._offload.bounded(check_cwd, spec.cwd)
        if problem is not None:
            raise self._fail(spec, problem)
        return self.spawn_now(spec)

    def close(self) -> None:
        for fd in self._cgroup_fds.values():
            os.close(fd)
        self._cgroup_fds.clear()
        self._offload.close()

    def _fail(self, spec: SpawnSpec, err: Exception) -> InvalidArgument:
        detail = _go_error(err) if isinstance(err, OSError) else str(err)
        if spec.pty is not None:
            return InvalidArgument(
                f"error starting pty with command '{spec.describe()}' in dir '{spec.cwd}' with "
                f"'{spec.pty.cols & 0xFFFF}' cols and '{spec.pty.rows & 0xFFFF}' rows: {detail}"
            )
        return InvalidArgument(f"error starting process '{spec.describe()}': {detail}")

    def spawn_now(self, spec: SpawnSpec) -> Child:
        """Start the child (cwd already checked); blocking only for the kernel's vfork+exec."""
        groups = spec.groups if spec.groups is not None else supplementary_groups(spec.username, spec.gid)
        argv = spec.argv
        if argv is None:
            argv = command_line(
                spec.cmd, spec.args, spec.search_path, wait_release=spec.cgroup_procs is not None, cwd=spec.cwd
            )
        switch = (spec.uid, spec.gid) != (os.getuid(), os.getgid()) or sorted(groups) != sorted(self._own_groups)
        if switch and not (self._root and self._creds.available()):
            raise Internal(f"cannot start a process as uid {spec.uid}: envd is not root or the platform is unsupported")
        mine: list[int] = []  # parent ends, closed on failure
        theirs: list[int] = []  # child ends, always closed here
        try:
            try:
                actions, child = self._plumbing(spec, mine, theirs)
                release_w = None
                if spec.cgroup_procs is not None:
                    release_r, release_w = os.pipe2(os.O_CLOEXEC)
                    theirs.append(release_r)
                    mine.append(release_w)
                    actions.append((os.POSIX_SPAWN_DUP2, release_r, RELEASE_FD))
            except OSError as err:
                raise Internal(f"error creating pipes: {err}") from None
            _close_on_exec_all()
            try:
                pid = self._posix_spawn(argv, spec, actions, groups if switch else None)
            except (OSError, ValueError) as err:
                raise self._fail(spec, err) from None
            child.pid = pid
            try:
                child.pidfd = os.pidfd_open(pid)
            except (OSError, AttributeError):
                child.pidfd = None  # no pidfd (old kernel): the process polls waitpid instead
            if release_w is not None:
                self._place(pid, spec.cgroup_procs)
                os.write(release_w, b"\n")
                os.close(release_w)
                mine.remove(release_w)
            return child
        except BaseException:
            for fd in mine:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
    def _plumbing(self, spec: SpawnSpec, mine: list[int], theirs: list[int]) -> tuple[list[tuple], Child]:
        child = Child(pid=0, pidfd=None)
        if spec.pty is not None:
            master, slave = os.openpty()
            mine.append(master)
            theirs.append(slave)
            set_window_size(slave, spec.pty)
            if spec.uid != os.geteuid():
                os.fchown(slave, spec.uid, -1)
            os.set_blocking(master, False)
            child.master = master
            return [
                (os.POSIX_SPAWN_OPEN, 0, os.ttyname(slave), os.O_RDWR, 0),
                (os.POSIX_SPAWN_DUP2, 0, 1),
                (os.POSIX_SPAWN_DUP2, 0, 2),
            ], child
        actions: list[tuple] = []
        if spec.stdin:
            stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
            theirs.append(stdin_r)
            mine.append(stdin_w)
            os.set_blocking(stdin_w, False)
            child.stdin = stdin_w
            actions.append((os.POSIX_SPAWN_DUP2, stdin_r, 0))
        else:
            actions.append((os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0))
        for name, target in (("stdout", 1), ("stderr", 2)):
            read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            mine.append(read_end)
            theirs.append(write_end)
            os.set_blocking(write_end, True)  # the child's end stays blocking
            setattr(child, name, read_end)
            actions.append((os.POSIX_SPAWN_DUP2, write_end, target))
        return actions, child

    def _posix_spawn(self, argv: list[str], spec: SpawnSpec, actions: list[tuple], groups: list[int] | None) -> int:
        def run() -> int:
            return os.posix_spawn(
                argv[0],
                argv,
                spec.env,
                file_actions=actions,
                setsid=spec.pty is not None,
                setsigmask=(),
                setsigdef=_DEFAULT_SIGNALS,
                resetids=True,  # the child's effective ids := the real ones set below
            )

        if groups is None:
            return run()
        self._creds.set_groups(groups)
        try:
            self._creds.set_real_ids(spec.uid, spec.gid)
            try:
                return run()
            finally:
                self._creds.set_real_ids(0, 0)
        finally:
            self._creds.set_groups(self._own_groups)

    def _place(self, pid: int, procs: str) -> None:
        try:
            fd = self._cgroup_fds.get(procs)
            if fd is None:
                fd = self._cgroup_fds[procs] = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
            os.write(fd, str(pid).encode())
        except OSError as err:
            log.warning("cannot place pid %d in %s: %s", pid, procs, err)
