"""A running child as envd tracks it, with Popen's verbs (poll, wait, send_signal, kill) — spec/envd.md §6.5-6.11.

When a process ends (§6.5): once every output stream is at EOF, or once SIGTERM/SIGKILL was sent through
`send_signal` or the lifetime limit expired — and then the child has been reaped. Until then an exited child
stays a zombie on purpose: its pid cannot be reused while it is still a key of the process table. Exit is
noticed through a pidfd on the event loop (no SIGCHLD handler, no watcher thread); envd reaps only its own pid.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ...errors import Internal, Unknown
from .exit_status import ExitStatus
from .fanout import PIPE_READ_SIZE, PTY_READ_SIZE, Closed, Fanout, Source, Subscriber
from .spawn import Child, TerminalSize, set_window_size

log = logging.getLogger("envd.process")

_POLL_INTERVAL = 0.02  # only without pidfd support


@dataclass(frozen=True)
class ProcessConfig:
    """What the caller asked to run, kept as received for List (§6.8)."""

    cmd: str
    args: tuple[str, ...] = ()
    envs: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None


class _StdinClosed(Exception):
    """CloseStdin while a write waited for room."""


def _os_text(err: OSError) -> str:
    text = os.strerror(err.errno) if err.errno else str(err)
    return text[:1].lower() + text[1:]


class ProcessHandle:
    def __init__(
        self,
        child: Child,
        config: ProcessConfig,
        tag: str | None,
        on_end: Callable[[ProcessHandle], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._child = child
        self.pid = child.pid
        self.config = config
        self.tag = tag
        self.is_pty = child.master is not None
        self._on_end = on_end
        self.returncode: ExitStatus | None = None
        self._waiters: list[asyncio.Future[ExitStatus]] = []
        self._awaiting_exit = False
        self._poll_timer: asyncio.TimerHandle | None = None
        self._lifetime_timer: asyncio.TimerHandle | None = None
        self._write_lock = asyncio.Lock()
        self._write_waiter: asyncio.Future[None] | None = None
        if self.is_pty:
            sources = [Source(child.master, "pty", PTY_READ_SIZE)]
        else:
            sources = [Source(child.stdout, "stdout", PIPE_READ_SIZE), Source(child.stderr, "stderr", PIPE_READ_SIZE)]
        self.output: Fanout[ExitStatus] = Fanout(sources, on_eof=self._await_exit)

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self, lifetime: float | None = None) -> None:
        """Start reading output (subscribe the Start stream first) and arm the lifetime limit (§6.6)."""
        if lifetime is not None and lifetime > 0:
            self._lifetime_timer = self._loop.call_later(lifetime, self._lifetime_expired)
        if self._child.pidfd is not None:
            # Watched from the start, so an exit seen in the same poll as the output EOF is reaped at once.
            self._loop.add_reader(self._child.pidfd, self._exit_ready)
        self.output.start()

    def subscribe(self) -> Subscriber[ExitStatus]:
        return self.output.subscribe()

    def _lifetime_expired(self) -> None:
        self._lifetime_timer = None
        if self.returncode is None:
            log.info("process %d reached its lifetime limit", self.pid)
            try:
                self._signal(signal.SIGKILL)
            except Internal as err:
                log.warning("process %d: %s", self.pid, err.message)
            self._await_exit()

    def _exit_ready(self) -> None:
        """The child has exited. It stays an unreaped zombie until its output is done (§6.5)."""
        pidfd = self._child.pidfd
        if pidfd is not None:
            self._loop.remove_reader(pidfd)
        if self._awaiting_exit and not self._try_reap():
            self._poll_timer = self._loop.call_later(_POLL_INTERVAL, self._poll_reap)  # never expected

    def _await_exit(self) -> None:
        """Output is done (or the process was told to stop): reap it as soon as it has exited."""
        if self._awaiting_exit or self.returncode is not None:
            return
        self._awaiting_exit = True
        if self._try_reap():
            return
        if self._child.pidfd is None:
            self._poll_timer = self._loop.call_later(_POLL_INTERVAL, self._poll_reap)
        # else: _exit_ready reaps it

    def _poll_reap(self) -> None:
        self._poll_timer = None
        if not self._try_reap():
            self._poll_timer = self._loop.call_later(_POLL_INTERVAL, self._poll_reap)

    def _try_reap(self) -> bool:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            # Reaped by someone else (should not happen): the status is lost.
            log.warning("process %d was reaped elsewhere", self.pid)
            pid, status = self.pid, 0xFF00
        if pid == 0:
            return False
        self._finish(ExitStatus.from_wait_status(status))
        return True

    def _finish(self, status: ExitStatus) -> None:
        self.returncode = status
        # §6.5: remaining subscribers get the end after what they have queued.
        self.output.finish(status)
        self._release()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(status)
        self._waiters.clear()
        self._on_end(self)

    def _release(self) -> None:
        """Stop timers and readers; close every fd of this child."""
        if self._lifetime_timer is not None:
            self._lifetime_timer.cancel()
            self._lifetime_timer = None
        if self._poll_timer is not None:
            self._poll_timer.cancel()
            self._poll_timer = None
        child = self._child
        if child.pidfd is not None:
            self._loop.remove_reader(child.pidfd)
        self._fail_write(BrokenPipeError(errno.EPIPE, "process ended"))
        for name in ("pidfd", "stdin", "stdout", "stderr", "master"):
            fd = getattr(child, name)
            if fd is not None:
                if name == "master" or name == "stdin":
                    self._loop.remove_writer(fd)
                self._loop.remove_reader(fd)
                os.close(fd)
                setattr(child, name, None)

    # -- live upgrade (§3.12) -------------------------------------------------------------------------

    def handover(self) -> dict:
        """What an incoming envd needs to adopt this child; the fds listed must survive the exec."""
        remaining = None
        if self._lifetime_timer is not None:
            remaining = max(self._lifetime_timer.when() - self._loop.time(), 0.001)
        child = self._child
        return {
            "pid": self.pid,
            "tag": self.tag,
            "config": {"cmd": self.config.cmd, "args": list(self.config.args), "envs": dict(self.config.envs),
                       "cwd": self.config.cwd},
            "fds": {name: getattr(child, name) for name in ("stdin", "stdout", "stderr", "master")},
            "lifetime": remaining,
        }

    @classmethod
    def adopt(cls, entry: dict, on_end: Callable[[ProcessHandle], None]) -> ProcessHandle:
        """A child handed over by the previous envd (same pid, so still our child). Raises OSError."""
        fds = {name: fd for name, fd in entry["fds"].items() if fd is not None}
        for fd in fds.values():
            os.fstat(fd)  # carried for real
            os.set_inheritable(fd, False)
        child = Child(pid=entry["pid"], pidfd=os.pidfd_open(entry["pid"]), **fds)
        config = entry["config"]
        return cls(child, ProcessConfig(config["cmd"], tuple(config["args"]), config["envs"], config["cwd"]),
                   entry["tag"], on_end)

    def detach(self) -> None:
        """Daemon shutdown: forget the child without killing it; subscribers see `Closed`."""
        if self.returncode is None:
            self.output.shutdown(Closed("envd is shutting down"))
            self._release()

    # -- Popen-like verbs ---------------------------------------------------------------------------

    def poll(self) -> ExitStatus | None:
        return self.returncode

    async def wait(self) -> ExitStatus:
        if self.returncode is not None:
            return self.returncode
        waiter: asyncio.Future[ExitStatus] = self._loop.create_future()
        self._waiters.append(waiter)
        return await asyncio.shield(waiter)

    def send_signal(self, signum: int) -> None:
        """§6.11: signal the pid only; for SIGTERM/SIGKILL stop waiting for output EOF."""
        self._signal(signum)
        if signum in (signal.SIGTERM, signal.SIGKILL):
            self._await_exit()

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _signal(self, signum: int) -> None:
        if self.returncode is not None:
            raise Internal("error sending signal: os: process already finished")
        try:
            # Safe by pid: an unreaped child's pid cannot be reused.
            os.kill(self.pid, signum)
        except OSError as err:
            raise Internal(f"error sending signal: {_os_text(err)}") from None

    # -- input --------------------------------------------------------------------------------------

    async def write_stdin(self, data: bytes) -> None:
        if self.is_pty:
            raise Internal(
                "error writing to stdin: tty assigned to process — input should be written to the pty, not the stdin"
            )
        await self._write_all("stdin", "error writing to stdin", "stdin not enabled or closed", data)

    async def write_pty(self, data: bytes) -> None:
        if not self.is_pty:
            raise Internal(
                "error writing to tty: tty not assigned to process — input should be written to the stdin, not the tty"
            )
        await self._write_all("master", "error writing to tty", "tty closed", data)

    async def _write_all(self, fd_name: str, prefix: str, closed_text: str, data: bytes) -> None:
        """Write every byte, waiting for room while the pipe/terminal is full (§6.9), one writer at a time."""
        async with self._write_lock:
            view = memoryview(data)
            while True:
                fd = getattr(self._child, fd_name)
                if fd is None:
                    raise Internal(f"{prefix}: {closed_text}")
                if not view:
                    return
                try:
                    written = os.write(fd, view)
                except BlockingIOError:
                    try:
                        await self._writable(fd_name, fd)
                    except _StdinClosed:
                        raise Internal(f"{prefix}: {closed_text}") from None
                    except OSError as err:
                        raise Internal(f"{prefix}: write: {_os_text(err)}") from None
                    continue
                except OSError as err:
                    raise Internal(f"{prefix}: write: {_os_text(err)}") from None
                view = view[written:]

    async def _writable(self, fd_name: str, fd: int) -> None:
        waiter = self._write_waiter = self._loop.create_future()
        self._loop.add_writer(fd, _wake, waiter)
        try:
            await waiter
        finally:
            self._write_waiter = None
            if getattr(self._child, fd_name) == fd:  # not closed (and its number reused) meanwhile
                self._loop.remove_writer(fd)

    def _fail_write(self, error: Exception) -> None:
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def close_stdin(self) -> None:
        """§6.11: EOF on the child's stdin; idempotent; PTY processes use Ctrl+D instead."""
        if self.is_pty:
            raise Unknown("error closing stdin: cannot close stdin for PTY process — send Ctrl+D (0x04) instead")
        fd = self._child.stdin
        if fd is None:
            return
        self._child.stdin = None
        self._loop.remove_writer(fd)
        self._fail_write(_StdinClosed())
        try:
            os.close(fd)
        except OSError as err:
            raise Unknown(f"error closing stdin: {_os_text(err)}") from None

    def resize(self, size: TerminalSize) -> None:
        if not self.is_pty or self._child.master is None:
            raise Internal("error resizing tty: tty not assigned to process")
        try:
            set_window_size(self._child.master, size)
        except OSError as err:
            raise Internal(f"error resizing tty: {_os_text(err)}") from None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)

