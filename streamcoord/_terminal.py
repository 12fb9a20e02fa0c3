"""What the command line shows: metrics as words, streamed text wrapped at word boundaries,
and one live status line on a terminal's stderr, redrawn in place.

The answer itself goes to stdout untouched (pipeable); everything about the stream goes to
stderr, and the live line is drawn only when stderr is a terminal.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from typing import Callable, Optional, TextIO

from streamcoord._stream_metrics import StreamMetrics

__all__ = ["StatusLine", "WordWrapper", "describe_metrics", "plural"]

# ECMA-48 / VT100 controls. IND and RI move down/up one line keeping the column (IND
# scrolls at the bottom line); DECSC/DECRC save and restore the cursor position.
_CLEAR_LINE = "\r\x1b[K"
_IND = "\x1bD"
_RI = "\x1bM"
_SAVE = "\x1b7"
_RESTORE = "\x1b8"
_TOKENS = re.compile(r"\n|[^\S\n]+|\S+")


def plural(count: int, singular: str, plural_form: Optional[str] = None) -> str:
    """``plural(1, "error")`` -> ``"1 error"``, ``plural(2, "retry", "retries")`` -> ``"2 retries"``."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def describe_metrics(metrics: StreamMetrics, live: bool = False) -> str:
    """One line: the short live form while streaming, the full summary at the end."""
    head = (
        f"[{metrics.status}] {plural(metrics.chunks_received, 'chunk')}, "
        f"{plural(metrics.bytes_received, 'byte')}, {metrics.duration_ms / 1000:.1f} s, "
        f"{metrics.chunks_per_second:.1f} chunks/s"
    )
    if live:
        return head
    first = metrics.time_to_first_chunk_ms
    parts = [head, "first chunk " + ("-" if first is None else f"after {first:.0f} ms")]
    if metrics.errors:
        recovered = metrics.status == "completed" and (metrics.recoveries or metrics.retries)
        parts.append(plural(metrics.errors, "error") + (", recovered" if recovered else ""))
    else:
        parts.append("no errors")
    counts = [plural(metrics.recoveries, "recovery", "recoveries")] if metrics.recoveries else []
    counts += [plural(metrics.retries, "retry", "retries")] if metrics.retries else []
    if counts:
        parts[-1] += f" ({', '.join(counts)})"
    return ", ".join(parts)


class WordWrapper:
    """Text that arrives in pieces, written wrapped to ``width`` columns at word boundaries.

    A word is written once the whitespace after it shows it is complete (``flush()`` writes
    the last one), so a piece that ends mid-word never gets a line break inside the word.
    Spaces at a break are dropped; newlines in the text are kept.
    """

    def __init__(self, write: Callable[[str], object], width: Optional[int] = None) -> None:
        self._write = write
        self.width = max(width or shutil.get_terminal_size().columns, 20)
        self._column = 0
        self._word = ""
        self._space = ""

    def feed(self, text: str) -> None:
        for token in _TOKENS.findall(text):
            if token == "\n":
                self._put_word()
                self._space = ""
                self._write("\n")
                self._column = 0
            elif token.isspace():
                self._put_word()
                self._space += token
            else:
                self._word += token

    def flush(self) -> None:
        self._put_word()
        self._space = ""

    def _put_word(self) -> None:
        word, self._word = self._word, ""
        if not word:
            return
        if self._column and self._column + len(self._space) + len(word) > self.width:
            self._write("\n")
            self._column = 0
        elif self._column:
            self._write(self._space)
            self._column += len(self._space)
        self._space = ""
        self._write(word)
        self._column = (self._column + len(word)) % self.width if len(word) > self.width else self._column + len(word)


class StatusLine:
    """``--metrics``: one line of live metrics on stderr while the answer streams, then one
    summary line.

    The live line is drawn only when stderr is a terminal (not ``TERM=dumb``), redrawn in
    place with CR + erase-to-end. When stdout is the same terminal, the line sits just below
    the answer's last line: it is erased before each piece of the answer and drawn again
    after it, so the answer on screen stays exactly what was streamed. ``update`` may be
    called from any thread (``on_metrics`` runs on the stream's worker).
    """

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._out = out
        self._err = err
        self._live = _is_terminal(err) and os.environ.get("TERM") != "dumb"
        self._shared = self._live and _is_terminal(out) and _same_file(out, err)
        self._lock = threading.Lock()
        self._shown: Optional[str] = None
        self._finished = False

    def update(self, metrics: StreamMetrics) -> None:
        if not self._live or metrics.status != "streaming":
            return  # the end is the summary's, written by finish() after the last word
        with self._lock:
            if not self._finished:
                self._draw(describe_metrics(metrics, live=True))

    def write(self, text: str) -> None:
        """Answer text to stdout, around the live line when both share a terminal."""
        with self._lock:
            shown = self._shown if self._shared else None
            if shown is not None:
                self._erase()
            self._out.write(text)
            self._out.flush()
            if shown is not None:
                self._draw(shown)

    def finish(self, metrics: Optional[StreamMetrics]) -> None:
        """Replace the live line with the summary (after the answer's final newline)."""
        with self._lock:
            self._finished = True
            if self._shown is not None:
                self._erase()
            if metrics is not None:
                self._err.write(describe_metrics(metrics) + "\n")
                self._err.flush()

    def _draw(self, text: str) -> None:
        text = text[: _columns(self._err) - 1]  # never wrap: a wrapped line cannot be redrawn
        if self._shared:
            # Make room below without moving (scrolls at the bottom), save the answer's
            # cursor, draw on the line below, come back.
            self._out.flush()
            self._err.write(_IND + _RI + _SAVE + _IND + _CLEAR_LINE + text + _RESTORE)
        else:
            self._err.write(_CLEAR_LINE + text)
        self._err.flush()
        self._shown = text

    def _erase(self) -> None:
        self._err.write(_SAVE + _IND + _CLEAR_LINE + _RESTORE if self._shared else _CLEAR_LINE)
        self._err.flush()
        self._shown = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def _same_file(a: TextIO, b: TextIO) -> bool:
    try:
        return os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
    except (AttributeError, OSError, ValueError):
        return False


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return 80
