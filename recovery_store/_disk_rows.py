"""DiskStore's write path in SQL: one statement per row written, ranges for a record's pieces.

diskcache's ``set`` costs five statements and a cull (SELECT the row, UPDATE or INSERT it,
look for expired rows to delete) and its ``delete`` two; a DiskStore append went through
``set`` three times (piece, revision, head): 21 statements per append, and ``finish``
deleted its pieces one by one (18,000 statements for a 3,000-read answer). These helpers
write the same rows of diskcache's ``Cache`` table (same columns, ``MODE_RAW`` JSON text, as
``JSONTextDisk`` stores them), so every reader (``cache.get``, older versions of this
package) reads them as before. They run inside the caller's ``cache.transact()`` on
diskcache's own connection for this thread, and fall back to ``set`` where a row is not
the plain kind they write (a value big enough for a file of its own, a row not there yet).

A stream's pieces are the keys ``p:{id}:{i}``; a stream id may contain ``:``, so a range
of them is the key prefix *and* an index of digits only (``p:a:b:0`` is not a piece of
``a``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, List, Tuple

from diskcache.core import MODE_RAW

__all__ = ["bump_counter", "json_text", "pieces", "put_piece", "remove_pieces", "touch_pieces", "update_value", "value_of"]

_INSERT = (
    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, filename, value)"
    " VALUES (?, 1, ?, ?, ?, 0, NULL, 0, ?, NULL, ?)"
)
_UPDATE = "UPDATE Cache SET store_time = ?, expire_time = ?, access_time = ?, value = ? WHERE key = ? AND raw = 1 AND mode = ?"
# A row as ``cache.get`` reads it for a str key (raw = 1), without its per-call set-up
# (key check, eviction lookup: ~15 us of a ~250 us append, cProfile).
_SELECT = "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1 AND (expire_time IS NULL OR expire_time > ?)"
# A counter's get and rewrite in one statement where SQLite has RETURNING (3.35); the
# value stays the JSON text of an int, as json_text writes it.
_BUMP = (
    "UPDATE Cache SET store_time = ?, expire_time = ?, access_time = ?, value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)"
    " WHERE key = ? AND raw = 1 AND mode = ? AND (expire_time IS NULL OR expire_time > ?) RETURNING value"
)
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
# The rows of one stream's pieces: the prefix ``p:{id}:`` (';' is the character after ':'),
# then an index of digits only.
_PIECES = "key >= ? AND key < ? AND raw = 1 AND substr(key, ?) <> '' AND substr(key, ?) NOT GLOB '*[^0-9]*'"


def json_text(value: Any) -> str:
    """``value`` as JSONTextDisk stores it."""
    data = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        data.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: SQLite cannot hold them raw; escape
        data = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return data


def _range(stream_id: str) -> Tuple[str, str, int, int]:
    prefix = f"p:{stream_id}:"
    return prefix, f"p:{stream_id};", len(prefix) + 1, len(prefix) + 1


def put_piece(cache: Any, key: str, text: str, expire: float) -> None:
    """Write the new piece ``key``: one INSERT (``set`` for a text that needs a file, or a
    key an earlier, damaged record left behind)."""
    data = json_text(text)
    if len(data) < cache._disk.min_file_size:
        now = time.time()
        try:
            cache._sql(_INSERT, (key, now, now + expire, now, MODE_RAW, data))
            return
        except sqlite3.IntegrityError:  # the key is taken: let diskcache replace that row
            pass
    cache.set(key, text, expire=expire)


def update_value(cache: Any, key: str, value: Any, expire: float) -> None:
    """Rewrite ``key``'s value in place: one UPDATE (``set`` when the row is not there)."""
    data = json_text(value)
    now = time.time()
    if len(data) < cache._disk.min_file_size and cache._sql(_UPDATE, (now, now + expire, now, data, key, MODE_RAW)).rowcount:
        return
    cache.set(key, value, expire=expire)


def value_of(cache: Any, key: str) -> Any:
    """``cache.get(key)`` (None for a row missing or expired): one SELECT."""
    rows = cache._sql(_SELECT, (key, time.time())).fetchall()
    if not rows:
        return None
    mode, filename, value = rows[0]
    try:
        return cache._disk.fetch(mode, filename, value, False)
    except OSError:  # a value in a file deleted meanwhile, as cache.get has it
        return None


def bump_counter(cache: Any, key: str, expire: float) -> int:
    """``cache.get(key, 0) + 1``, written back with the new expiry, and returned: one
    UPDATE (two statements on an SQLite before 3.35; ``set`` when the row is not there)."""
    if not _HAS_RETURNING:
        value = (value_of(cache, key) or 0) + 1
        update_value(cache, key, value, expire)
        return int(value)
    now = time.time()
    rows = cache._sql(_BUMP, (now, now + expire, now, key, MODE_RAW, now)).fetchall()
    if rows:
        return int(rows[0][0])
    cache.set(key, 1, expire=expire)
    return 1


def touch_pieces(cache: Any, stream_id: str, expire: float) -> None:
    """Give every piece of ``stream_id`` a new expiry: one UPDATE."""
    cache._sql(f"UPDATE Cache SET expire_time = ? WHERE {_PIECES}", (time.time() + expire,) + _range(stream_id))


def remove_pieces(cache: Any, stream_id: str, keep_first: bool = False) -> None:
    """Delete the pieces of ``stream_id`` (all, or all but ``p:{id}:0``): one DELETE, and
    the files of the pieces that had one removed after it."""
    where = _PIECES + (" AND key <> ?" if keep_first else "")
    args = _range(stream_id) + ((f"p:{stream_id}:0",) if keep_first else ())
    files = [row[0] for row in cache._sql(f"SELECT filename FROM Cache WHERE {where} AND filename IS NOT NULL", args)]
    cache._sql(f"DELETE FROM Cache WHERE {where}", args)
    for filename in files:
        cache._disk.remove(filename)


def pieces(cache: Any, stream_id: str, count: int) -> List[Any]:
    """The values of pieces ``0 .. count-1`` of ``stream_id`` in order, None for a piece
    missing or expired: one SELECT."""
    now = time.time()
    found: List[Any] = [None] * count
    rows = cache._sql(
        f"SELECT key, mode, filename, value FROM Cache WHERE {_PIECES} AND (expire_time IS NULL OR expire_time > ?)",
        _range(stream_id) + (now,),
    ).fetchall()
    start = len(_range(stream_id)[0])
    for key, mode, filename, value in rows:
        i = int(key[start:])
        if i < count:
            found[i] = cache._disk.fetch(mode, filename, value, False)
    return found
