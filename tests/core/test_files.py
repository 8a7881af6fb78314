"""The core's file plumbing: pairing by stem (any suffix set) and atomic generation of a missing data root."""

from __future__ import annotations

from pathlib import Path

import pytest

from segsuite.core.errors import DataError
from segsuite.core.files import files_in, find_inputs, generated_root, pair_by_stem, stem


def test_images_pair_with_masks_by_stem_across_suffixes(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for name in ("b.TIF", "a.png", "c.nii.gz", "notes.txt"):
        (images / name).write_bytes(b"x")
    for name in ("a.png", "b.tif", "c.nii.gz"):
        (masks / name).write_bytes(b"x")
    pairs = pair_by_stem(images, masks, (".png", ".tif", ".nii.gz"), (".png", ".tif", ".nii.gz"))
    assert [(i.name, m.name) for i, m in pairs] == [("a.png", "a.png"), ("b.TIF", "b.tif"),
                                                    ("c.nii.gz", "c.nii.gz")]
    assert stem(images / "c.nii.gz") == "c" and [p.name for p in files_in(images, [".txt"])] == ["notes.txt"]
    (masks / "b.tif").unlink()
    with pytest.raises(DataError, match=r"no label for image .*b\.TIF: expected .*b\.png or .*b\.tif"):
        pair_by_stem(images, masks, (".png", ".tif"), (".png", ".tif"))
    with pytest.raises(DataError, match=r"no images found in .*images \(accepted suffixes: \.jpg\)"):
        pair_by_stem(images, masks, (".jpg",))
    with pytest.raises(DataError, match="mask folder .*nowhere does not exist"):
        pair_by_stem(images, tmp_path / "nowhere", (".png",))


def test_a_missing_root_is_generated_whole_or_not_at_all(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DataError, match=f"data root {root} does not exist \\(set synthetic_if_missing=true\\)"):
        generated_root(root, None, "set synthetic_if_missing=true")

    def broken(folder):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        generated_root(root, broken, "")
    assert list(tmp_path.iterdir()) == []  # no root, no staging folder left behind

    def racing(folder):  # another process finishes first: its root is kept and used
        (folder / "mine.txt").write_text("mine")
        root.mkdir()
        (root / "theirs.txt").write_text("theirs")

    assert generated_root(root, racing, "") == root
    assert [p.name for p in root.iterdir()] == ["theirs.txt"] and [p.name for p in tmp_path.iterdir()] == ["data"]
    assert generated_root(root, broken, "") == root  # an existing root is used as it is


def test_inputs_are_a_file_a_folder_searched_recursively_a_pattern_or_a_list(tmp_path):
    for rel in ("a.png", "b.JPG", "sub/c.png", "sub/.hidden.png", ".cache/d.png", "masks/e.png", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    suffixes = (".png", ".jpg")
    found = find_inputs(tmp_path, suffixes, "images", skip=lambda folder: folder == "masks")
    assert found == [(tmp_path / "a.png", Path("a.png")), (tmp_path / "b.JPG", Path("b.JPG")),
                     (tmp_path / "sub" / "c.png", Path("sub/c.png"))]  # hidden, skipped and other files left out
    assert [rel for _, rel in find_inputs(tmp_path, suffixes, "images", recursive=False)] == [Path("a.png"),
                                                                                               Path("b.JPG")]
    assert find_inputs(tmp_path / "a.png", suffixes, "images") == [(tmp_path / "a.png", None)]
    assert find_inputs(str(tmp_path / "*.png"), suffixes, "images") == [(tmp_path / "a.png", None)]
    assert find_inputs([tmp_path / "a.png", tmp_path / "sub"], suffixes, "images") == [
        (tmp_path / "a.png", None), (tmp_path / "sub" / "c.png", Path("c.png"))]
    with pytest.raises(DataError, match=r"notes.txt is not one of the images \(\*.png\)"):
        find_inputs(tmp_path / "notes.txt", suffixes, "images (*.png)")
    with pytest.raises(DataError, match="missing does not exist"):
        find_inputs(tmp_path / "missing", suffixes, "images")
    with pytest.raises(DataError, match=r"no images in input folder .*\.cache \(searched recursively\)"):
        find_inputs(tmp_path / ".cache", (".tif",), "images")


def test_a_folder_is_searched_flat_when_asked(tmp_path):
    for name in ("b.TIF", "a.tif", "notes.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub.tif").mkdir()  # a folder named like a file is not an input
    (tmp_path / "deeper").mkdir()
    (tmp_path / "deeper" / "c.tif").write_text("x")
    found = find_inputs(tmp_path, [".tif", ".tiff"], "GeoTIFFs", recursive=False)
    assert found == [(tmp_path / "a.tif", Path("a.tif")), (tmp_path / "b.TIF", Path("b.TIF"))]
    assert find_inputs(tmp_path / "a.tif", [".tif"], "GeoTIFFs") == [(tmp_path / "a.tif", None)]
    with pytest.raises(DataError, match="no .npy arrays in input folder"):
        find_inputs(tmp_path, [".npy"], ".npy arrays", recursive=False)
    with pytest.raises(DataError, match="missing.tif does not exist"):
        find_inputs(tmp_path / "missing.tif", [".tif"], "GeoTIFFs", recursive=False)
