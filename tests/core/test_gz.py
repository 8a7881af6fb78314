"""core.gz: standard gzip both ways (zlib reads what it writes and the other way round); a cut stream is one of
the errors it names."""

import gzip
import os
import zlib

import pytest

from segsuite.core import gz


def test_gzip_round_trips_and_speaks_the_standard_format():
    data = os.urandom(1000) + bytes(200_000)
    assert gz.gunzip(gz.gzipped(data)) == data
    assert gzip.decompress(gz.gzipped(data)) == data  # any tool reads what we write
    assert gz.gunzip(gzip.compress(data, 6)) == data  # and we read what others write
    assert gz.gunzip(gzip.compress(data[:10]) + gzip.compress(data[10:20])) == data[:20]  # every member
    assert len(gz.gzipped(bytes(1_000_000))) < 20_000  # it compresses


@pytest.mark.parametrize("plain", [False, True])
def test_zlib_streams_are_standard_with_or_without_isal(monkeypatch, plain):
    if plain:
        monkeypatch.setattr(gz, "isal_zlib", zlib)  # as where python-isal is not installed
    data = os.urandom(1000) + bytes(200_000) + bytes(range(256)) * 100
    assert zlib.decompress(gz.zlib_stream(data)) == data  # what PNG readers inflate
    assert len(gz.zlib_stream(bytes(1_000_000))) < 20_000


def test_a_cut_stream_raises_one_of_the_named_errors():
    with pytest.raises(gz.ERRORS):
        gz.gunzip(gzip.compress(os.urandom(5000))[:-100])
