"""A reader's findings are handed from check to open once, and never for a file that changed in between."""

import os

from segsuite.core.probes import Probes, file_version


def test_findings_are_taken_once_for_the_unchanged_file(tmp_path):
    path = tmp_path / "scene.tif"
    path.write_bytes(b"header")
    probes = Probes()
    probes.keep(file_version(path), "probed")
    assert probes.take(path) == "probed"
    assert probes.take(path) is None  # taken: the next open probes again


def test_a_changed_file_is_probed_again(tmp_path):
    path = tmp_path / "scene.tif"
    path.write_bytes(b"header")
    probes = Probes()
    probes.keep(file_version(path), "probed")
    path.write_bytes(b"another header")  # a new size
    assert probes.take(path) is None
    probes.keep(file_version(path), "again")
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # same size, touched
    assert probes.take(path) is None


def test_urls_and_missing_files_have_no_version(tmp_path):
    assert file_version("https://example.com/scene.tif") is None
    assert file_version(tmp_path / "missing.tif") is None
    probes = Probes()
    probes.keep(None, "ignored")
    assert probes.take("https://example.com/scene.tif") is None
