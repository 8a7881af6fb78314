import os
import stat

import pytest

from segsuite.core.errors import DataError
from segsuite.core.io import atomic_path, check_writable, write_json


def test_atomic_path_renames_on_success_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_existing_output_is_not_replaced_unless_asked(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("precious")
    with pytest.raises(DataError, match="already exists"):
        check_writable(target)
    with atomic_path(target, overwrite=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_unwritable_folder_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="is a file, not a folder"):
        check_writable(blocker / "sub" / "out.tif")


def test_json_is_strict_and_csv_leaves_nan_empty(tmp_path):
    import json
    import math

    import numpy as np

    from segsuite.core.io import write_csv

    write_json(tmp_path / "a.json", {"x": float("nan"), "y": np.float32(2.5), "z": [math.inf, np.int64(3)]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None, "y": 2.5, "z": [None, 3]}
    write_csv(tmp_path / "a.csv", [{"a": float("nan"), "b": 1}, {"a": 2.0, "b": None}])
    assert (tmp_path / "a.csv").read_text().splitlines() == ["a,b", ",1", "2.0,"]


def test_staging_commits_all_or_nothing_and_removes_what_killed_runs_left(tmp_path):
    import subprocess
    import sys

    from segsuite.core.io import STAGING_PREFIX, Staging

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket
    host = socket.gethostname().replace("-", "_")
    stale = tmp_path / f"{STAGING_PREFIX}{host}-{int(dead.stdout)}-abc"
    (stale / "out").mkdir(parents=True)
    (stale / "out" / "half.tif").write_text("half")
    outputs = [tmp_path / "out" / "a.txt", tmp_path / "out" / "sub" / "b.txt"]
    with pytest.raises(RuntimeError):
        with Staging(outputs) as stage:
            assert not stale.exists()  # the killed run's leftovers are gone
            stage.path(outputs[0]).write_text("a")
            raise RuntimeError("second input failed")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(STAGING_PREFIX + "*"))
    with Staging(outputs) as stage:
        for p in outputs:
            stage.path(p).write_text(p.name)
        stage.commit()
    assert [p.read_text() for p in outputs] == ["a.txt", "b.txt"]
    assert not list(tmp_path.glob(STAGING_PREFIX + "*"))
    with pytest.raises(DataError, match="already exists"):
        Staging(outputs)


def test_pattern_matches_sorted_files_and_refuses_an_empty_pattern(tmp_path):
    from segsuite.core.io import pattern_matches

    for name in ("b_1.nii.gz", "a_1.nii.gz", "a_2.txt", "odd[1].tif"):
        (tmp_path / name).write_text("")
    assert pattern_matches(tmp_path / "*_1.nii.gz") == [tmp_path / "a_1.nii.gz", tmp_path / "b_1.nii.gz"]
    assert pattern_matches(tmp_path / "a_1.nii.gz") is None  # no pattern
    assert pattern_matches(tmp_path / "odd[1].tif") is None  # an existing file, taken literally
    with pytest.raises(DataError, match=r"input pattern '.*\*\.png' matches no files"):
        pattern_matches(tmp_path / "*.png")
