"""DiskStore specifics: private directory, JSON-only storage, sharing across stores and processes."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import stat
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

import recovery_store
from recovery_store import DiskStore, default_store
from recovery_store import _disk_checkpoint as disk_checkpoint_module
from recovery_store import _disk_live as disk_live_module
from recovery_store import _disk_rows as disk_rows_module
from recovery_store import disk as disk_module

REPO_ROOT = Path(recovery_store.__file__).resolve().parent.parent
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def _rows(directory):
    with sqlite3.connect(os.path.join(directory, "cache.db")) as con:
        return con.execute("SELECT key, raw, mode, filename, value FROM Cache").fetchall()


@posix_only
def test_a_new_directory_is_created_private(tmp_path):
    target = tmp_path / "a" / "b" / "recovery"
    with DiskStore(target):
        pass
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700


@posix_only
def test_an_existing_directory_of_ours_is_tightened_to_0700(tmp_path):
    target = tmp_path / "recovery"
    target.mkdir(mode=0o755)
    os.chmod(target, 0o755)
    with DiskStore(target):
        pass
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700


def test_values_are_stored_as_json_text_never_pickle(tmp_path):
    with DiskStore(tmp_path) as store:
        store.start("s1", {"provider": "openai", "request": {"big": "z" * 40_000}})
        store.append("s1", "héllo 😀")
        assert isinstance(store.cache.disk, disk_module.JSONTextDisk)
    rows = _rows(tmp_path)
    assert rows
    for key, raw, mode, filename, value in rows:
        assert raw == 1 and isinstance(key, str)
        assert mode in (1, 3)  # raw text in SQLite, or a text file; never 4 (pickle)
        if mode == 1:
            assert isinstance(value, str)
            json.loads(value)
        else:
            json.loads((tmp_path / filename).read_text(encoding="utf-8"))
    values = {key: value for key, _, mode, _, value in rows if mode == 1}
    assert json.loads(values["p:s1:0"]) == "héllo 😀"


def test_a_tampered_pickle_row_is_refused_not_unpickled(tmp_path):
    with DiskStore(tmp_path) as store:
        store.start("s1", {"provider": "openai"})
    with sqlite3.connect(os.path.join(tmp_path, "cache.db")) as con:
        con.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = 'm:s1'", (pickle.dumps({"evil": True}),))
    with DiskStore(tmp_path) as store:
        with pytest.raises(ValueError, match="unpickle"):
            store.load("s1")


def test_append_is_visible_to_a_second_store_on_the_same_directory(tmp_path):
    with DiskStore(tmp_path) as first, DiskStore(tmp_path) as second:
        first.start("s1", {"provider": "openai"})
        first.append("s1", "Hello")
        assert second.load("s1").text == "Hello"
        second.append("s1", ", world")
        assert first.load("s1").text == "Hello, world"


def test_append_is_visible_to_a_second_process(tmp_path):
    with DiskStore(tmp_path) as store:
        store.start("s1", {"provider": "openai"})
        store.append("s1", "from parent; ")
        code = (
            "import sys, recovery_store as r\n"
            "s = r.DiskStore(sys.argv[1])\n"
            "rec = s.load('s1')\n"
            "s.append('s1', 'from child, who saw ' + repr(rec.text))\n"
            "s.close()\n"
        )
        subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT, check=True, timeout=60)
        assert store.load("s1").text == "from parent; from child, who saw 'from parent; '"


def test_a_record_survives_a_killed_writer_process(tmp_path):
    code = (
        "import os, sys, recovery_store as r\n"
        "s = r.DiskStore(sys.argv[1])\n"
        "s.start('s1', {'provider': 'openai'})\n"
        "s.append('s1', 'persisted before the consumer saw it')\n"
        "os._exit(9)\n"  # no close, no cleanup
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 9
    with DiskStore(tmp_path) as store:
        assert store.load("s1").text == "persisted before the consumer saw it"


def test_records_expire_in_real_time_and_disappear_from_disk(tmp_path):
    # The ttl leaves a loaded machine time to get from start to append (with 0.05 s, a pause
    # between them expired the head and append raised KeyError); expiry is awaited with a
    # bound instead of a fixed sleep.
    ttl = 0.5
    with DiskStore(tmp_path, ttl=ttl) as store:
        store.start("s1", {"provider": "openai"})
        store.append("s1", "soon gone")
        deadline = time.monotonic() + 5
        while store.load("s1") is not None:
            assert time.monotonic() < deadline, "the record never expired"
            time.sleep(0.05)
        store.cache.expire(now=time.time() + 4 * ttl)  # what diskcache's culling does later
    assert _rows(tmp_path) == []


def test_pieces_outlive_ttl_while_the_stream_keeps_writing(tmp_path):
    # The stream writes for more than 2 ttl (diskcache expires pieces 2 ttl after their
    # write, by the wall clock); early pieces must not expire under a live head. Each gap
    # between writes leaves 0.4 s of a ttl for a loaded machine; a run in which this thread
    # still did not get to write for a whole ttl expired the head itself, as it should, and
    # proves nothing about the pieces: it is run again.
    ttl, pieces = 0.5, [f"{i} " for i in range(11)]
    for attempt in range(3):
        with DiskStore(tmp_path / str(attempt), ttl=ttl) as store:
            store.start("s1", {"provider": "openai"})
            written, longest_gap = time.monotonic(), 0.0
            for piece in pieces:
                time.sleep(0.1)
                longest_gap = max(longest_gap, time.monotonic() - written)
                if longest_gap >= ttl:
                    break
                store.append("s1", piece)
                written = time.monotonic()
            if longest_gap < ttl:
                assert store.load("s1").text == "".join(pieces)
                return
    pytest.fail(f"three runs each had a pause of a whole ttl ({ttl} s) between two writes")


def test_an_append_writes_one_piece_and_a_small_head(tmp_path):
    with DiskStore(tmp_path) as store:
        store.start("s1", {"request": {"messages": "m" * 10_000}})
        for _ in range(50):
            store.append("s1", "x" * 10)
        head = store.cache.get("h:s1")
        assert head["n"] == 50
        assert len(json.dumps(head)) < 200  # neither the text nor the meta is rewritten


def test_default_directory_honours_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMCOORD_RECOVERY_DIR", str(tmp_path / "env-dir"))
    assert disk_module.default_directory() == str(tmp_path / "env-dir")
    with default_store() as store:
        assert isinstance(store, DiskStore)
        assert store.directory == str(tmp_path / "env-dir")
        assert os.path.isdir(store.directory)


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="XDG applies to Linux and other Unixes")
def test_default_directory_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMCOORD_RECOVERY_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert disk_module.default_directory() == str(tmp_path / "xdg" / "streamcoord" / "recovery")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert disk_module.default_directory() == str(tmp_path / "home" / ".cache" / "streamcoord" / "recovery")


def test_default_directory_on_macos_is_library_caches(tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMCOORD_RECOVERY_DIR", raising=False)
    monkeypatch.setattr(disk_module.sys, "platform", "darwin")
    monkeypatch.setattr(disk_module.os.path, "expanduser", lambda p: str(tmp_path) if p == "~" else p)
    expected = os.path.join(str(tmp_path), "Library", "Caches", "streamcoord", "recovery")
    assert disk_module.default_directory() == expected


def test_a_directory_given_as_a_path_object_works(tmp_path):
    with DiskStore(tmp_path / "p") as store:
        assert store.directory == str(tmp_path / "p")
        assert "DiskStore(" in repr(store)


def test_a_cache_db_overwritten_with_garbage_is_store_unavailable_naming_the_directory(tmp_path):
    with DiskStore(tmp_path):
        pass
    (tmp_path / "cache.db").write_bytes(os.urandom(8192))
    with pytest.raises(recovery_store.StoreUnavailable, match="damaged or not a database") as info:
        DiskStore(tmp_path)
    assert str(tmp_path) in str(info.value) and isinstance(info.value, OSError)


@pytest.mark.parametrize("where", ["itself", "a parent"])
def test_a_file_where_the_directory_should_be_is_store_unavailable_naming_it(tmp_path, where):
    (tmp_path / "taken").write_text("a file")
    directory = tmp_path / "taken" if where == "itself" else tmp_path / "taken" / "recovery"
    with pytest.raises(recovery_store.StoreUnavailable, match="a file stands where") as info:
        DiskStore(directory)
    assert str(directory) in str(info.value)


def _clock_module(**changes):
    """The ``time`` module as a process sees it after the machine's clock changed."""
    fake = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("__")})
    for name, shift in changes.items():
        real = getattr(time, name)
        setattr(fake, name, lambda real=real, shift=shift: real() + shift)
    return fake


def test_a_wall_clock_step_forward_does_not_end_a_live_lease(tmp_path, monkeypatch):
    store = DiskStore(tmp_path)
    token = store.acquire_lease("s1", 10)
    monkeypatch.setattr(time, "time", _clock_module(time=60).time)  # NTP steps the clock 60 s ahead
    assert store.leased("s1")
    assert store.acquire_lease("s1", 10) is None, "a second owner"
    assert DiskStore(tmp_path).acquire_lease("s1", 10) is None, "a second owner in another store"
    assert store.renew_lease("s1", token, 10)


def test_a_wall_clock_step_back_does_not_keep_a_dead_holders_lease(tmp_path, monkeypatch):
    store = DiskStore(tmp_path)
    store.acquire_lease("s1", 0.2)
    monkeypatch.setattr(time, "time", _clock_module(time=-3600).time)
    deadline = time.monotonic() + 5
    successor = None
    while successor is None and time.monotonic() < deadline:
        time.sleep(0.05)
        successor = store.acquire_lease("s1", 10)
    assert successor, "the lease outlived its ttl by the wall clock's step"


def test_a_lease_written_before_a_reboot_is_free(tmp_path, monkeypatch):
    store = DiskStore(tmp_path)
    store.acquire_lease("s1", 10)
    # The monotonic clock started over at boot: the old deadline lies far ahead of it.
    monkeypatch.setattr(disk_live_module, "time", _clock_module(monotonic=-10 ** 6))
    assert not store.leased("s1")
    assert store.acquire_lease("s1", 10)


def _write_the_old_way(cache, sid, pieces, meta):
    """A record as DiskStore wrote it before its SQL write path: one diskcache set per row."""
    now = time.time()
    cache.set("m:" + sid, meta, expire=172800)
    for i, piece in enumerate(pieces):
        cache.set(f"p:{sid}:{i}", piece, expire=172800)
    head = {"status": "streaming", "n": len(pieces), "keep_until": now + 172800, "epoch": "0" * 16,
            "updated_at": now, "rev": cache.get("revision", 0) + 1}
    cache.set("revision", head["rev"], expire=172800)
    cache.set("h:" + sid, head, expire=86400)


def test_a_record_written_by_the_previous_write_path_loads_resumes_and_is_removed(tmp_path):
    big = "é" * 40_000  # past diskcache's min_file_size: a file of its own
    with DiskStore(tmp_path) as store:
        _write_the_old_way(store.cache, "old", ["Hello, ", big, "world."], {"provider": "openai"})
        assert store.load("old").text == "Hello, " + big + "world."
        store.append("old", " More.")
        assert store.load("old").text == "Hello, " + big + "world. More."
        store.finish("old")
        assert store.load("old") is None
    assert [row for row in _rows(tmp_path) if row[0].startswith(("p:", "h:", "m:"))] == []
    assert [name for _, _, names in os.walk(tmp_path) for name in names if name.endswith(".val")] == []


@pytest.mark.parametrize("returning", [True, False], ids=["sqlite-with-returning", "sqlite-before-3.35"])
def test_every_write_moves_the_revision_on_from_a_counter_the_previous_write_path_left(tmp_path, monkeypatch, returning):
    monkeypatch.setattr(disk_rows_module, "_HAS_RETURNING", returning)
    with DiskStore(tmp_path) as store:
        _write_the_old_way(store.cache, "old", ["Hello"], {"provider": "openai"})
        seen = [store.revision("old")]
        for piece in (", ", "world", "."):
            store.append("old", piece)
            seen.append(store.revision("old"))
        store.set_status("old", "failed")
        seen.append(store.revision("old"))
        assert seen == sorted(set(seen)) and len(seen) == 5  # rising at every write
        assert store.load("old").text == "Hello, world."
    with DiskStore(tmp_path) as reopened:  # the counter reads back as the number it is
        reopened.start("new", {"provider": "openai"})
        assert reopened.revision("new") > seen[-1]


def test_finish_and_replace_text_leave_the_pieces_of_an_id_that_extends_this_one(tmp_path):
    with DiskStore(tmp_path) as store:
        for sid in ("a", "a:1", "a:b"):
            store.start(sid, {"provider": "openai"})
            for piece in ("one ", "two ", "three"):
                store.append(sid, piece + sid)
        store.replace_text("a", "kept")
        assert store.load("a").text == "kept"
        store.finish("a")
        assert store.load("a") is None
        assert store.load("a:1").text == "one a:1two a:1threea:1"
        assert store.load("a:b").text == "one a:btwo a:bthreea:b"
        assert sorted(row[0] for row in _rows(tmp_path) if row[0].startswith("p:")) == [
            "p:a:1:0", "p:a:1:1", "p:a:1:2", "p:a:b:0", "p:a:b:1", "p:a:b:2",
        ]


def test_checkpoints_start_a_writing_streams_log_over(tmp_path, monkeypatch):
    # Checkpoints run in their own short-lived thread, off the writer's path, and the log
    # starts over while a stream writes on; without them it grows by ~25 KB per append
    # (2000 appends: ~48 MB). The test waits for each checkpoint the writes started (close()
    # of the checkpointer joins the one in progress): how soon the thread runs is up to the
    # machine's load (CI: a tight loop of appends on two busy cores starved it to 44 MB).
    monkeypatch.setattr(disk_checkpoint_module, "CHECKPOINT_WRITES", 100)  # ~2.7 MB of log per cycle
    with DiskStore(tmp_path) as store:
        store.start("s1", {"provider": "openai"})
        longest = 0
        for i in range(2000):
            store.append("s1", f"{i} ")
            longest = max(longest, os.path.getsize(tmp_path / "cache.db-wal"))
            if i % 100 == 99:
                store._checkpoints.close()
        assert store.load("s1").text == "".join(f"{i} " for i in range(2000))
    assert longest < 8 * 1024 * 1024  # about one cycle, never the sum of twenty
