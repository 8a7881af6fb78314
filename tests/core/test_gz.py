"""core.gz: standard gzip both ways (zlib reads what it writes and the other way round); a cut stream is one of
the errors it names."""

import gzip
import os

import pytest

from segsuite.core import gz


def test_gzip_round_trips_and_speaks_the_standard_format():
    data = os.urandom(1000) + bytes(200_000)
    assert gz.gunzip(gz.gzipped(data)) == data
    assert gzip.decompress(gz.gzipped(data)) == data  # any tool reads what we write
    assert gz.gunzip(gzip.compress(data, 6)) == data  # and we read what others write
    assert gz.gunzip(gzip.compress(data[:10]) + gzip.compress(data[10:20])) == data[:20]  # every member
    assert len(gz.gzipped(bytes(1_000_000))) < 20_000  # it compresses


def test_a_cut_stream_raises_one_of_the_named_errors():
    with pytest.raises(gz.ERRORS):
        gz.gunzip(gzip.compress(os.urandom(5000))[:-100])
