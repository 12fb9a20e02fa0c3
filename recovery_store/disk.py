"""The default recovery store: a diskcache (SQLite) directory, shared by threads and processes.

Layout, per stream (``{id}`` is the validated stream id):

* ``h:{id}``: the small head ``{"status", "updated_at", "n", "keep_until"}``, rewritten on
  every write; it expires ``ttl`` after the last write and defines the record's life.
* ``m:{id}``: ``meta`` (it holds the request body, possibly large), written only by
  ``start`` so an append never rewrites it.
* ``p:{id}:{i}``: the i-th appended piece of text, ``0 <= i < n``. An append writes one
  piece and the head: O(len(delta)), not O(total).
* Live streams: the head's ``rev`` (from the store-wide counter ``revision``, bumped in
  the same transaction as each write), the lease ``l:{id}`` (the holder's token and its
  deadline on the machine's monotonic clock, taken and renewed in a transaction), the cancel mark
  ``x:{id}`` and the producer's outcome ``o:{id}``. SQLite has no way to notify another process, so ``wait_for`` polls the
  head every :data:`WAIT_POLL_INTERVAL` seconds (one indexed read each). That code is in
  ``_disk_live``, with the head's ``epoch`` (the revision of the last ``start`` or
  ``replace_text``) that lets a reader read only the pieces added since its last read.

Refreshing every piece's expiry on every append would be O(pieces) again. Instead meta and
pieces get ``2 * ttl`` and the head remembers (``keep_until``, wall clock) how long they
are guaranteed to live; only when that would end before the head's new expiry are they all
touched again, at most about once per ``ttl``. Orphans of an expired head are culled by
diskcache at most ``2 * ttl`` later.

Security: the directory is created 0700, and values are stored as JSON *text* by
:class:`JSONTextDisk`, which also refuses to unpickle anything it finds in the database, so
a tampered cache file cannot run code. Size-based eviction is off (``eviction_policy
"none"``): partial answers disappear by expiry, never because the cache grew.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import sys
import time
from typing import Any, Callable, Dict, Optional, Union, cast

import diskcache
from diskcache.core import MODE_PICKLE, UNKNOWN

from ._disk_checkpoint import Checkpointer
from ._disk_live import WAIT_POLL_INTERVAL, DiskLiveStreams
from ._disk_rows import bump_counter, json_text, pieces, put_piece, remove_pieces, touch_pieces, update_value, value_of
from .base import (
    DEFAULT_TTL,
    STATUSES,
    RecoveryStore,
    StoreUnavailable,
    StreamRecord,
    _closed,
    _lease_lost,
    _unknown,
    dump_meta,
    logger,
    validate_status,
    validate_stream_id,
    validate_text,
    validate_ttl,
)

__all__ = ["WAIT_POLL_INTERVAL", "DiskStore", "JSONTextDisk", "default_directory", "default_store"]

PathLike = Union[str, "os.PathLike[str]"]


class JSONTextDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache ships no types: Disk is Any
    """A diskcache ``Disk`` that stores every value as JSON text and never unpickles.

    Unlike ``diskcache.JSONDisk`` (zlib-compressed JSON blobs, and still willing to
    unpickle a row whose mode says pickle), the database holds plain, inspectable JSON.
    Keys must be ``str``.
    """

    def put(self, key: Any) -> Any:
        if type(key) is not str:
            raise TypeError(f"JSONTextDisk keys must be str, not {type(key).__name__}")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise ValueError("refusing to unpickle a key found in the recovery cache")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> Any:
        if read:
            raise TypeError("JSONTextDisk does not store file-like values")
        return super().store(json_text(value), False, key=key)

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        if mode == MODE_PICKLE:
            raise ValueError("refusing to unpickle a value found in the recovery cache")
        if read:
            raise TypeError("JSONTextDisk does not return file handles")
        data = super().fetch(mode, filename, value, False)
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        return json.loads(data)


def default_directory() -> str:
    """``$STREAMCOORD_RECOVERY_DIR``, else the platform's per-user cache directory."""
    env = os.environ.get("STREAMCOORD_RECOVERY_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        base = os.path.join(home, "Library", "Caches")
    elif os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(home, ".cache")  # XDG: absolute only
    return os.path.join(base, "streamcoord", "recovery")


def _private_directory(directory: str) -> None:
    """Create ``directory`` 0700, or tighten it to 0700 if it already exists and is ours."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if os.name != "posix":
        return  # chmod cannot express owner-only access on Windows; ACLs are inherited
    st = os.stat(directory)
    if st.st_uid == os.getuid() and (st.st_mode & 0o777) != 0o700:
        os.chmod(directory, 0o700)


def _open_cache(directory: str) -> diskcache.Cache:
    """The cache in ``directory`` (made 0700 first); StoreUnavailable, saying what is wrong
    with the directory and what to do, when it cannot be opened."""
    try:
        _private_directory(directory)
        return _new_cache(directory)
    except (FileExistsError, NotADirectoryError) as exc:
        raise StoreUnavailable(
            f"the recovery store directory {directory!r} cannot be used: a file stands where it or "
            f"one of its parents should be ({exc.strerror}); choose another directory"
        ) from exc
    except PermissionError as exc:
        raise StoreUnavailable(
            f"the recovery store directory {directory!r} cannot be used: permission denied for "
            f"{exc.filename!r}; make it writable by this user or choose another directory"
        ) from exc
    except sqlite3.DatabaseError as exc:
        raise StoreUnavailable(
            f"the recovery store in {directory!r} cannot be opened ({type(exc).__name__}: {exc}): its "
            "cache.db is damaged or not a database; delete the directory's contents or choose another"
        ) from exc
    except OSError as exc:
        raise StoreUnavailable(f"the recovery store directory {directory!r} cannot be used: {exc}") from exc


def _new_cache(directory: str) -> diskcache.Cache:
    cache = diskcache.Cache.__new__(diskcache.Cache)
    try:
        cache.__init__(directory, disk=JSONTextDisk, eviction_policy="none")
    except BaseException:
        # A failed __init__ may have opened the database already: close it now, not when
        # the garbage collector gets to it (a stream tries the default store on every call).
        try:
            cache.close()
        except Exception:  # noqa: S110 - it was never fully opened
            pass
        raise
    return cache


def _check_head(sid: str, head: Any) -> Dict[str, Any]:
    """A head as this store writes it, or ValueError saying what is wrong with it."""
    if not isinstance(head, dict):
        raise ValueError(f"the head of stream {sid!r} is a {type(head).__name__}, not a dict")
    n, updated_at = head.get("n"), head.get("updated_at")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"the head of stream {sid!r} has a piece count of {str(n)[:20]}, not a whole number >= 0")
    for name, value in (("updated_at", updated_at), ("keep_until", head.get("keep_until"))):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"the {name} in the head of stream {sid!r} is not a number")
    if head.get("status") not in STATUSES:
        raise ValueError(f"the head of stream {sid!r} has an unknown status")
    return head


class DiskStore(DiskLiveStreams, RecoveryStore):
    """Recovery records in a diskcache directory; safe across threads and processes.

    ``clock`` (default :func:`time.time`) stamps ``updated_at`` and decides expiry on
    ``load``; it must be wall-clock time because other processes read the same records.
    diskcache's own expiry (real time) reclaims the space.
    """

    fenced_writes = True  # writes take lease= (see the store contract)

    def __init__(
        self,
        directory: Optional[PathLike] = None,
        ttl: float = DEFAULT_TTL,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = validate_ttl(ttl)
        self._clock = clock
        self.directory = os.path.abspath(os.fspath(directory)) if directory is not None else default_directory()
        self._cache = _open_cache(self.directory)
        self._checkpoints = Checkpointer(os.path.join(self.directory, diskcache.core.DBNAME))
        self._closed = False

    def __repr__(self) -> str:
        return f"DiskStore({self.directory!r}, ttl={self.ttl!r})"

    @property
    def cache(self) -> diskcache.Cache:
        """The underlying cache (for inspection and tests; do not write to it)."""
        return self._cache

    # -- helpers (call inside a transaction) ----------------------------------------------
    def _txn(self) -> Any:
        if self._closed:
            raise _closed(self)
        self._checkpoints.tune(self._cache._con)  # checkpoints in their own thread (_disk_checkpoint)
        return self._cache.transact(retry=True)

    def _head(self, sid: str) -> Optional[Dict[str, Any]]:
        head = value_of(self._cache, "h:" + sid)
        if head is not None and self._clock() - _check_head(sid, head)["updated_at"] >= self.ttl:
            logger.debug("recovery record expired", extra={"stream_id": sid, "provider": "-"})
            return None
        return cast(Dict[str, Any], head)  # checked by _check_head

    def _remove(self, sid: str, head: Optional[Dict[str, Any]]) -> None:
        if head is None:
            head = self._cache.get("h:" + sid)  # logically expired heads still list pieces
        remove_pieces(self._cache, sid)  # one range delete (a damaged head's pieces too)
        self._cache.delete("m:" + sid)
        self._cache.delete("h:" + sid)

    def _write_head(self, sid: str, head: Dict[str, Any]) -> None:
        """Stamp and store ``head``; first make sure meta and pieces outlive it."""
        now = time.time()  # diskcache expires by real time, whatever self._clock says
        if head["keep_until"] < now + self.ttl:
            long = 2 * self.ttl
            self._cache.touch("m:" + sid, expire=long)
            touch_pieces(self._cache, sid, long)
            head["keep_until"] = now + long
        head["updated_at"] = self._clock()
        # Store-wide, so a restarted record never repeats a revision; it may start over
        # only once every record (which lives ttl) has long expired. Both rows are
        # rewritten in place (_disk_rows: one statement each, not diskcache's five).
        head["rev"] = bump_counter(self._cache, "revision", 2 * self.ttl)
        update_value(self._cache, "h:" + sid, head, self.ttl)
        self._checkpoints.note_write()

    def _existing(self, sid: str, lease: Optional[str] = None) -> Dict[str, Any]:
        head = self._head(sid)
        if head is None:
            raise _unknown(sid)
        if lease is not None and self._lease_holder(sid) != lease:
            raise _lease_lost(sid)  # checked in the write's own transaction: no gap to slip into
        return head

    # -- the contract ----------------------------------------------------------------------
    def start(self, stream_id: str, meta: Dict[str, Any]) -> None:
        validate_stream_id(stream_id)
        dump_meta(meta)  # validate (TypeError/ValueError) before touching the cache
        long = 2 * self.ttl
        with self._txn():
            self._remove(stream_id, None)
            self._cache.delete("x:" + stream_id)
            self._cache.delete("o:" + stream_id)
            self._cache.set("m:" + stream_id, meta, expire=long)
            head = {"status": "streaming", "n": 0, "keep_until": time.time() + long, "epoch": secrets.token_hex(8)}
            self._write_head(stream_id, head)

    def append(self, stream_id: str, text: str, *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        validate_text(text)
        with self._txn():
            head = self._existing(stream_id, lease)
            if text:
                put_piece(self._cache, f"p:{stream_id}:{head['n']}", text, 2 * self.ttl)
                head["n"] += 1
            self._write_head(stream_id, head)

    def replace_text(self, stream_id: str, text: str, *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        validate_text(text)
        with self._txn():
            head = self._existing(stream_id, lease)
            remove_pieces(self._cache, stream_id, keep_first=True)
            if text:
                self._cache.set(f"p:{stream_id}:0", text, expire=2 * self.ttl)
            else:
                self._cache.delete(f"p:{stream_id}:0")
            head["n"] = 1 if text else 0
            head["epoch"] = secrets.token_hex(8)  # the pieces are new: readers read them whole
            self._write_head(stream_id, head)

    def update_meta(self, stream_id: str, changes: Dict[str, Any], *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        with self._txn():
            head = self._existing(stream_id, lease)
            meta = self._cache.get("m:" + stream_id)
            merged = dict(meta if isinstance(meta, dict) else {}, **changes)
            dump_meta(merged)
            self._cache.set("m:" + stream_id, merged, expire=2 * self.ttl)
            self._write_head(stream_id, head)

    def set_status(self, stream_id: str, status: str, *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        validate_status(status)
        with self._txn():
            head = self._existing(stream_id, lease)
            head["status"] = status
            self._write_head(stream_id, head)

    def load(self, stream_id: str) -> Optional[StreamRecord]:
        validate_stream_id(stream_id)
        with self._txn():  # a consistent snapshot: no append can land half-way
            head = self._head(stream_id)
            if head is None:
                return None
            meta = self._cache.get("m:" + stream_id)
            texts = pieces(self._cache, stream_id, head["n"])  # one query, joined below
        if meta is None or any(p is None for p in texts):
            logger.warning("recovery record is incomplete; ignoring it", extra={"stream_id": stream_id, "provider": "-"})
            return None
        for i, piece in enumerate(texts):
            if not isinstance(piece, str):
                raise ValueError(f"piece {i} of stream {stream_id!r} is not text but {type(piece).__name__}")
        return StreamRecord(stream_id, meta, "".join(texts), head["status"], head["updated_at"])

    def delete(self, stream_id: str) -> None:
        validate_stream_id(stream_id)
        with self._txn():
            self._remove(stream_id, None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._checkpoints.close()
            self._cache.close()


def default_store() -> DiskStore:
    """A new :class:`DiskStore` on :func:`default_directory`; the caller owns (closes) it."""
    return DiskStore()
