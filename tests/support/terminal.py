"""A terminal for tests: a command run with its stdout and/or stderr on a pseudo-terminal of
a given size, what it writes read as it arrives, and the screen a user would see (pyte, a
VT100 emulator, interprets the control sequences: the test does not model the terminal).

    with Terminal([sys.executable, "-m", "streamcoord", "demo"], columns=60) as term:
        assert term.wait_for(lambda t: "[completed]" in t.text())
    assert term.returncode == 0 and term.display()[0].startswith("streamcoord demo")
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading
from typing import Callable, List, Mapping, Optional, Sequence

import pyte

__all__ = ["Terminal"]


class Terminal:
    """``stdout="tty"|"pipe"``, ``stderr="tty"|"pipe"``: which streams the terminal gets;
    the piped ones are collected in ``piped_stdout`` / ``piped_stderr`` (bytes)."""

    def __init__(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
                 columns: int = 80, rows: int = 24, stdout: str = "tty", stderr: str = "tty") -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        environ = dict(os.environ if env is None else env)
        environ.pop("COLUMNS", None)  # the size is the terminal's, as for a user
        environ.pop("LINES", None)
        environ.setdefault("TERM", "xterm")
        self._cond = threading.Condition()
        self.raw = bytearray()  # everything the terminal received
        self.piped_stdout = bytearray()
        self.piped_stderr = bytearray()
        self.screen = pyte.Screen(columns, rows)
        self._feed = pyte.ByteStream(self.screen)
        try:
            self.proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, cwd=cwd, env=environ,
                stdout=slave if stdout == "tty" else subprocess.PIPE,
                stderr=slave if stderr == "tty" else subprocess.PIPE,
            )
        finally:
            os.close(slave)
        self._master = master
        self._readers = [threading.Thread(target=self._read_terminal, daemon=True)]
        for pipe, sink in ((self.proc.stdout, self.piped_stdout), (self.proc.stderr, self.piped_stderr)):
            if pipe is not None:
                self._readers.append(threading.Thread(target=self._read_pipe, args=(pipe, sink), daemon=True))
        for reader in self._readers:
            reader.start()
        self.returncode: Optional[int] = None

    def _read_terminal(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                data = b""
            with self._cond:
                if not data:
                    self._cond.notify_all()
                    return
                self.raw += data
                self._feed.feed(data)
                self._cond.notify_all()

    def _read_pipe(self, pipe, sink: bytearray) -> None:
        for data in iter(lambda: pipe.read1(65536), b""):
            with self._cond:
                sink += data
                self._cond.notify_all()
        pipe.close()

    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")

    def display(self) -> List[str]:
        """The screen's lines, trailing blanks removed, blank lines at the bottom dropped."""
        with self._cond:
            lines = [line.rstrip() for line in self.screen.display]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def wait_for(self, predicate: Callable[["Terminal"], bool], timeout: float = 15.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self) or self.proc.poll() is not None, timeout) \
                and predicate(self)

    def finish(self, timeout: float = 30.0) -> int:
        try:
            self.returncode = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for reader in self._readers:
                reader.join(timeout)
            os.close(self._master)
        return self.returncode

    def __enter__(self) -> "Terminal":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finish()
