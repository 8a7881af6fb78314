"""The decoded-pixel cache: arrays read once come back equal and memory-mapped, a changed file is read again, and a
folder that cannot take them turns the cache off without stopping the reader."""

import logging
import os
import pickle

import numpy as np

from segsuite.core.unpacked import Unpacked, source_key


def _reader(arrays, calls):
    def read():
        calls.append(1)
        return [a.copy() for a in arrays]
    return read


def test_arrays_read_once_come_back_equal_and_mapped(tmp_path):
    arrays = [np.arange(24, dtype=np.uint16).reshape(2, 3, 4), np.eye(3, dtype=bool), np.zeros((0, 5), np.int64)]
    cache, calls = Unpacked(tmp_path / "cache"), []
    first = cache.get(("a.tif", 1), _reader(arrays, calls))
    again = cache.get(("a.tif", 1), _reader(arrays, calls))
    assert len(calls) == 1 and cache.written == 1 and cache.hits == 1
    for a, b, c in zip(arrays, first, again, strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c) and a.dtype == c.dtype and a.shape == c.shape
    assert isinstance(again[0], np.memmap) and not again[0].flags.writeable
    other = Unpacked(tmp_path / "cache")  # another process (a DataLoader worker) finds the entry
    other.get(("a.tif", 1), _reader(arrays, calls))
    assert len(calls) == 1 and other.hits == 1
    assert not list((tmp_path / "cache").rglob(".part-*"))  # nothing half-written is left


def test_a_changed_file_is_read_again(tmp_path):
    path = tmp_path / "a.tif"
    path.write_bytes(b"one")
    cache, calls = Unpacked(tmp_path / "cache"), []
    cache.get((source_key(path), "window"), _reader([np.ones(3)], calls))
    path.write_bytes(b"three")
    os.utime(path, ns=(1, 1))
    cache.get((source_key(path), "window"), _reader([np.ones(3)], calls))
    assert len(calls) == 2
    assert source_key("https://example.org/a.tif") == "https://example.org/a.tif" and source_key(None) is None


def test_no_folder_keeps_nothing(tmp_path):
    cache, calls = Unpacked(None), []
    for _ in range(2):
        cache.get("k", _reader([np.ones(3)], calls))
    assert len(calls) == 2 and not list(tmp_path.iterdir())


def test_a_folder_that_cannot_be_written_turns_the_cache_off_once(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache, calls = Unpacked(blocker / "cache"), []
    with caplog.at_level(logging.WARNING):
        out = [cache.get(k, _reader([np.ones(3)], calls)) for k in ("a", "b")]
    assert len(calls) == 2 and all(np.array_equal(o[0], np.ones(3)) for o in out)
    assert cache.folder is None and len([r for r in caplog.records if "cache off" in r.getMessage()]) == 1


def test_pickling_keeps_the_folder_not_the_counts(tmp_path):
    cache = Unpacked(tmp_path)
    cache.get("k", lambda: [np.ones(2)])
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.folder == cache.folder and copy.written == copy.hits == 0
