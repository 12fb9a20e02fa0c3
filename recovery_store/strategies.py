"""Where to cut a partial answer before asking the model to continue it.

Continuing from the exact last character works, but a model resumes more naturally from a
clean boundary: the coordinator keeps ``text[:cut_point(text, strategy)]``, announces the
rest as a rewind, and the continuation regenerates it.

* ``exact``: keep everything.
* ``paragraph``: keep up to and including the last paragraph break (a line break, optional
  horizontal whitespace, another line break; a run of blank lines counts as one break). With
  no paragraph break, fall back to ``sentence``; with no sentence end either, to 0.
* ``sentence``: keep up to just after the last sentence end: ``.``, ``!``, ``?``, ``…`` (or
  a run of them) followed by whitespace or the end of the text, or CJK ``。！？`` followed
  by anything; closing quotes and brackets right after the mark are kept with it. The
  whitespace after the mark is *not* kept: the cut sits right after the punctuation (plus
  closing quote), so the continuation starts with its own separator. Not sentence ends: a
  dot inside a token (``3.14``, ``e.g.x``, ``example.com``), the last dot of a dotted
  abbreviation (``e.g.``, ``i.e.``, ``U.S.``) and an ordered-list marker (``1.`` at the
  start of a line). With no sentence end the cut is 0.

Positions are Python ``str`` indices (code points), never bytes. ``summarize`` (from the
Elixir original) needs a model call and is not supported here.
"""

from __future__ import annotations

import collections
import re

__all__ = ["STRATEGIES", "cut_point"]

STRATEGIES = ("exact", "paragraph", "sentence")

_LB = r"(?:\r\n|\r(?!\n)|\n)"  # a line break; "\r\n" is one break, never two
_PARAGRAPH_BREAK = re.compile(_LB + r"(?:[^\S\r\n]*" + _LB + r")+")

_WESTERN_MARKS = ".!?…"
_CJK_MARKS = "。！？"
_CLOSERS = "\"'”’)]」』）】》〉"
_SENTENCE_END = re.compile("[" + re.escape(_WESTERN_MARKS + _CJK_MARKS) + "]+[" + re.escape(_CLOSERS) + "]*")
# The token before a lone ".": a dotted abbreviation ("e.g", "U.S") or a list number at
# the start of a line ("  12").
_ABBREVIATION = re.compile(r"(?:^|[^\w.])(?:[^\W\d_]\.)+[^\W\d_]\Z")
_LIST_MARKER = re.compile(r"(?:^|[\r\n])[ \t]*\d{1,3}\Z")


def _check(text: object, strategy: object) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    if strategy == "summarize":
        raise ValueError(
            "recovery strategy 'summarize' is not supported; use one of " + ", ".join(map(repr, STRATEGIES))
        )
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown recovery strategy {strategy!r}; use one of " + ", ".join(map(repr, STRATEGIES)))


def _is_sentence_end(text: str, match: "re.Match[str]") -> bool:
    marks = match.group().rstrip(_CLOSERS)
    end = match.end()
    if any(c in _CJK_MARKS for c in marks):
        return True
    if end < len(text) and not text[end].isspace():
        return False  # "3.14", "e.g.x", "wait…what"
    if marks == ".":
        before = text[max(0, match.start() - 40) : match.start()]
        if _ABBREVIATION.search(before) or _LIST_MARKER.search(before):
            return False
    return True


def _sentence_cut(text: str) -> int:
    cut = 0
    for match in _SENTENCE_END.finditer(text):
        if _is_sentence_end(text, match):
            cut = match.end()
    return cut


def cut_point(text: str, strategy: str) -> int:
    """The index ``i`` such that ``text[:i]`` is the part to keep under ``strategy``.

    Raises ``ValueError`` for an unknown strategy (and for ``"summarize"``, which is not
    supported) and ``TypeError`` if ``text`` is not a ``str``.
    """
    _check(text, strategy)
    if strategy == "exact":
        return len(text)
    if strategy == "paragraph":
        last = collections.deque(_PARAGRAPH_BREAK.finditer(text), maxlen=1)
        if last:
            return last[0].end()
    return _sentence_cut(text)
