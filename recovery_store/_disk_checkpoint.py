"""DiskStore's WAL checkpoints, moved off the writers' path.

SQLite in WAL mode copies the log back into the database (a checkpoint, with its fsyncs)
inside the COMMIT that takes the log past ``wal_autocheckpoint`` pages (1000). A DiskStore
write is what a stream waits for before it hands chunks to its consumer, so that COMMIT
was the stream's worst latency: every ~150 appends a chunk came several milliseconds late
(p99 12 ms with recovery on, benchmarks/bench_latency.py). DiskStore's connections turn
automatic checkpoints off (``tune``) and call ``note_write`` per write; every
``CHECKPOINT_WRITES`` writes a short-lived thread runs PASSIVE checkpoints on a
connection of its own (they never block readers or writers) until the log is copied, and ends. A process killed
before a checkpoint loses nothing: the log is the committed data, replayed on the next
open.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any, Optional

__all__ = ["CATCH_UP_PASSES", "CHECKPOINT_WRITES", "LOG_LIMIT_FRAMES", "RESTART_WAIT_MS", "Checkpointer"]

# Writes between two checkpoints. Each checkpoint that catches up lets the log start over,
# and the write that starts it over syncs the log's header (SQLite, synchronous=NORMAL):
# one fsync (4-8 ms on the benchmark machine) on some stream's delivery path per cycle.
# At 100 that was 1% of writes, the recovery p99 (2000 paced appends: p99 4.3-5.4 ms);
# at 500, 0.2% (p99 0.8-1.1 ms). An append adds ~27 KB of log: ~14 MB between checkpoints.
CHECKPOINT_WRITES = 500
# Checkpoint passes at most, one after the other, to catch up with a busy writer.
CATCH_UP_PASSES = 20
# A log this long (frames of 4 KiB: 64 MiB) is restarted even if writers must wait for it,
# at most RESTART_WAIT_MS.
LOG_LIMIT_FRAMES = 16384
RESTART_WAIT_MS = 1000

logger = logging.getLogger("streamcoord")


class Checkpointer:
    """Checkpoints of the database at ``path``, each in a thread of its own."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._writes = 0
        self._thread: Optional[threading.Thread] = None
        self._tuned = threading.local()  # the connection of this thread that is tuned

    def tune(self, con: Any) -> None:
        """Turn automatic checkpoints off on ``con`` (diskcache's connection for this thread)."""
        if getattr(self._tuned, "con", None) is not con:
            con.execute("PRAGMA wal_autocheckpoint = 0").fetchall()
            self._tuned.con = con

    def note_write(self) -> None:
        """A write committed (or about to): every CHECKPOINT_WRITES, start a checkpoint."""
        with self._lock:
            self._writes += 1
            if self._writes < CHECKPOINT_WRITES or (self._thread is not None and self._thread.is_alive()):
                return
            self._writes = 0
            self._thread = threading.Thread(target=self._checkpoint, name="streamcoord-diskstore-checkpoint", daemon=True)
            self._thread.start()

    def _checkpoint(self) -> None:
        try:
            con = sqlite3.connect(self.path, timeout=0, isolation_level=None)
            try:
                # A PASSIVE pass copies the log back while writers go on (the slow part,
                # with its fsync). The log starts over, instead of growing, only at a write
                # that begins when it is all copied back, which a busy writer never does:
                # so once a pass has caught up, a RESTART pass that never waits (timeout 0:
                # busy means a writer is at work, try again) copies the little that came
                # meanwhile and makes the next write start the log over.
                for _ in range(CATCH_UP_PASSES):
                    busy, log, copied = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if log <= 0 or (not busy and copied >= log
                                    and not con.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]):
                        break
                else:
                    if log > LOG_LIMIT_FRAMES:
                        # Writers never paused (many streams at full speed): bound the log,
                        # making them wait once for a RESTART pass as SQLite's own would.
                        con.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
                        for _ in range(3):
                            if not con.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]:
                                break
            finally:
                con.close()
        except sqlite3.Error as exc:  # the next one tries again; the log only grows meanwhile
            logger.debug("recovery store checkpoint failed: %s", exc)

    def close(self) -> None:
        """Wait for a checkpoint in progress (the store is closing)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()
