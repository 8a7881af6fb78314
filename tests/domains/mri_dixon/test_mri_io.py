"""IO: exact geometry round trips, DICOM/MHA/NRRD in RAS+, canonical orientation, grid checks, bad files."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from segsuite.core.errors import DataError
from segsuite.domains.mri_dixon.cases import build_image, normalize_channel
from segsuite.domains.mri_dixon.io import (
    Volume,
    check_same_grid,
    from_canonical,
    list_dicom_series,
    read_dicom_series,
    read_grid,
    read_volume,
    to_canonical,
    write_label,
    write_nifti,
)

ORIENTATIONS = {
    "axis_aligned": dict(flips=(1, 1, 1), angles=(0.0, 0.0)),
    "oblique": dict(flips=(1, 1, 1), angles=(7.0, 15.0)),
    "lps_like": dict(flips=(-1, -1, 1), angles=(7.0, 15.0)),
    "flipped_z": dict(flips=(1, -1, -1), angles=(-4.0, 30.0)),
}


@pytest.fixture
def volume_array():
    rng = np.random.default_rng(0)
    return rng.normal(100, 20, (9, 7, 5)).astype(np.float32)  # (X, Y, Z), distinct sizes per axis


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_nifti_roundtrip_keeps_array_and_affine_exactly(
    tmp_path, volume_array, affine_factory, nifti_writer, orientation
):
    affine = affine_factory(**ORIENTATIONS[orientation])
    source = read_volume(nifti_writer(tmp_path / "in.nii.gz", volume_array, affine))
    assert source.array.dtype == np.float32 and source.affine.dtype == np.float64
    np.testing.assert_array_equal(source.affine, affine)
    written = read_volume(write_nifti(tmp_path / "out.nii.gz", source.array, source))
    np.testing.assert_array_equal(written.array, volume_array)
    np.testing.assert_array_equal(written.affine, source.affine)


def test_a_nifti_keeps_its_voxel_order_and_its_stack_normalises_each_channel_in_place(tmp_path, affine_factory):
    """A NIfTI's voxels (x fastest) are not copied into C order; the stack of normalised channels keeps that order
    (an axial slice is one block of memory) and holds what normalize_channel gives each channel alone, float32 and
    integer channels alike, with the fat fraction last; the same voxels in C order give the same stack up to float
    rounding."""
    rng = np.random.default_rng(3)
    water = rng.normal(100, 20, (9, 7, 5)).astype(np.float32)
    fat = rng.integers(0, 900, (9, 7, 5)).astype(np.int16)
    raw = {i: read_volume(write_nifti(tmp_path / f"c{i}.nii.gz", a, Volume(a, affine_factory()))).array
           for i, a in enumerate((water, fat))}
    assert all(a.flags.f_contiguous and not a.flags.c_contiguous for a in raw.values())
    image, params = build_image(raw, [0, 1], ["water", "fat"], (0.5, 99.5), (0, 1))
    alone = [normalize_channel(raw[i], (0.5, 99.5)) for i in (0, 1)]
    assert image.shape == (3, 9, 7, 5) and image.dtype == np.float32 and image[0, :, :, 2].flags.f_contiguous
    for i, (normalised, numbers) in enumerate(alone):
        np.testing.assert_array_equal(image[i], normalised)
        assert params[["water", "fat"][i]] == numbers
    c_order = build_image({i: np.ascontiguousarray(a) for i, a in raw.items()}, [0, 1], ["water", "fat"], (0.5, 99.5),
                          (0, 1))[0]
    assert c_order.flags.c_contiguous  # numpy sums in memory order: the mean and std round a little differently
    np.testing.assert_allclose(c_order, image, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("image_class", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize("endian", ["<", ">"])
def test_gzipped_nifti_reads_as_nibabel_does(tmp_path, volume_array, affine_factory, image_class, endian):
    """The one-call inflate of .nii.gz: NIfTI-1 and -2, either byte order, scaled int16: nibabel's array, affine and
    header type."""
    header = image_class.header_class(endianness=endian)
    img = image_class(np.round(volume_array).astype(np.int16), affine_factory(), header)
    img.header.set_slope_inter(0.5, 3.0)
    nib.save(img, tmp_path / "v.nii.gz")
    ours, theirs = read_volume(tmp_path / "v.nii.gz"), nib.load(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(ours.array, np.asanyarray(theirs.dataobj))
    np.testing.assert_array_equal(ours.affine, theirs.affine)
    assert type(ours.header) is type(theirs.header) and ours.header.endianness == endian


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_canonical_and_back_is_identity(tmp_path, volume_array, affine_factory, nifti_writer, orientation):
    affine = affine_factory(**ORIENTATIONS[orientation])
    source = read_volume(nifti_writer(tmp_path / "in.nii.gz", volume_array, affine))
    canonical = to_canonical(source)
    assert nib.aff2axcodes(canonical.affine) == ("R", "A", "S")
    reference = nib.as_closest_canonical(nib.load(tmp_path / "in.nii.gz"))
    np.testing.assert_array_equal(canonical.array, reference.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(canonical.affine, reference.affine, atol=1e-9)
    # The same world point is addressed by corresponding voxels before and after.
    ijk = np.array([2, 3, 4, 1.0])
    world = source.affine @ ijk
    ijk_canonical = np.linalg.solve(canonical.affine, world).round().astype(int)
    assert canonical.array[tuple(ijk_canonical[:3])] == source.array[2, 3, 4]
    label = (canonical.array > 100).astype(np.uint8)
    back = from_canonical(label, source)
    np.testing.assert_array_equal(back, (source.array > 100).astype(np.uint8))
    out = read_volume(write_label(tmp_path / "label.nii.gz", back, source))
    assert out.shape == source.shape and out.array.dtype == np.uint8
    np.testing.assert_array_equal(out.affine, source.affine)
    np.testing.assert_array_equal(out.array, back)


@pytest.mark.parametrize("codes", [(2, 1), (0, 1), (1, 0), (4, 2)])
def test_label_writer_keeps_header_codes_and_affine(tmp_path, volume_array, affine_factory, nifti_writer, codes):
    sform_code, qform_code = codes
    affine = affine_factory(flips=(-1, 1, 1))
    source = read_volume(nifti_writer(tmp_path / "in.nii.gz", volume_array, affine, sform_code, qform_code))
    path = write_label(tmp_path / "label.nii.gz", np.ones(source.shape, np.int64), source)
    img = nib.load(path)
    assert (int(img.header["sform_code"]), int(img.header["qform_code"])) == codes
    np.testing.assert_array_equal(img.affine, source.affine)
    for field in ("srow_x", "srow_y", "srow_z", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "pixdim"):
        np.testing.assert_array_equal(img.header[field], source.header[field])
    assert img.get_data_dtype() == np.uint8


def test_label_writer_dtype(tmp_path, volume_array, affine_factory):
    """Writers write straight to the (staged) path they are given; keeping existing outputs is the core's
    (tests/contract.py: existing outputs are kept without overwrite)."""
    reference = Volume(volume_array, affine_factory())
    path = write_label(tmp_path / "a.nii.gz", np.full(reference.shape, 300), reference)
    assert nib.load(path).get_data_dtype() == np.int16
    write_label(path, np.zeros(reference.shape, np.uint8), reference)
    assert nib.load(path).get_data_dtype() == np.uint8 and nib.load(path).get_fdata().max() == 0
    with pytest.raises(DataError, match="shape"):
        write_label(tmp_path / "b.nii.gz", np.zeros((2, 2, 2), np.uint8), reference)


def test_writer_from_non_nifti_reference_uses_scanner_codes(tmp_path, volume_array, affine_factory):
    reference = Volume(volume_array, affine_factory(flips=(-1, -1, 1)))
    img = nib.load(write_nifti(tmp_path / "x.nii", volume_array, reference))
    assert (int(img.header["sform_code"]), int(img.header["qform_code"])) == (1, 1)
    np.testing.assert_array_equal(img.affine, reference.affine)  # float32-exact affine survives


def test_dicom_series_equals_nifti(tmp_path, affine_factory, dicom_writer, nifti_writer):
    rng = np.random.default_rng(1)
    array = rng.integers(0, 1000, (10, 8, 6)).astype(np.int16)
    affine = affine_factory(spacing=(1.25, 0.75, 2.5), flips=(-1, -1, 1))
    dicom_writer(tmp_path / "dicom", array, affine, uid="1.2.826.0.1.3680043.2.1125.10", description="WATER")
    from_dicom = read_volume(tmp_path / "dicom")
    from_nifti = read_volume(nifti_writer(tmp_path / "w.nii.gz", array, affine))
    np.testing.assert_array_equal(from_dicom.array, from_nifti.array)
    # DICOM stores geometry as decimal strings (10 significant digits here): sub-micrometre agreement.
    np.testing.assert_allclose(from_dicom.affine, from_nifti.affine, atol=1e-5)


def test_dicom_several_series_pick_by_uid_or_description(tmp_path, affine_factory, dicom_writer):
    affine = affine_factory()
    water = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)
    uids = {"WATER": "1.2.826.0.1.3680043.2.1125.21", "FAT": "1.2.826.0.1.3680043.2.1125.22"}
    dicom_writer(tmp_path, water, affine, uid=uids["WATER"], description="WATER")
    dicom_writer(tmp_path, water * 2, affine, uid=uids["FAT"], description="FAT")
    assert {(s["uid"], s["description"]) for s in list_dicom_series(tmp_path)} == {(u, d) for d, u in uids.items()}
    np.testing.assert_array_equal(read_dicom_series(tmp_path, "FAT").array, water * 2)
    np.testing.assert_array_equal(read_volume(tmp_path, series=uids["WATER"]).array, water)
    with pytest.raises(DataError) as err:
        read_volume(tmp_path)
    assert "2 series" in str(err.value) and uids["FAT"] in str(err.value) and "'WATER'" in str(err.value)
    with pytest.raises(DataError, match="no series matches 'T2'.*FAT"):
        read_volume(tmp_path, series="T2")


def test_dicom_directory_without_series(tmp_path):
    (tmp_path / "notes.txt").write_text("no DICOM here")
    with pytest.raises(DataError, match="no DICOM series"):
        read_volume(tmp_path)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_sitk_formats_follow_ras_convention(tmp_path, affine_factory, sitk_image_factory, suffix):
    rng = np.random.default_rng(2)
    array = rng.normal(size=(6, 5, 4)).astype(np.float32)
    affine = affine_factory(flips=(-1, 1, -1))
    sitk.WriteImage(sitk_image_factory(array, affine), str(tmp_path / f"v{suffix}"))
    volume = read_volume(tmp_path / f"v{suffix}")
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-9)
    # Cross-check with nibabel's own world coordinates of the same file written as NIfTI.
    sitk.WriteImage(sitk_image_factory(array, affine), str(tmp_path / "v.nii.gz"))
    np.testing.assert_allclose(nib.load(tmp_path / "v.nii.gz").affine, volume.affine, atol=1e-5)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="case 'c1'.*nope.nii.gz.*no such file"):
        read_volume(tmp_path / "nope.nii.gz", case="c1")


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd"])
def test_read_grid_reads_the_header_alone(tmp_path, volume_array, affine_factory, sitk_image_factory, suffix):
    affine = affine_factory(flips=(-1, 1, 1))
    path = tmp_path / f"x{suffix}"
    if suffix == ".nii.gz":
        nib.save(nib.Nifti1Image(volume_array, affine), path)
    else:
        sitk.WriteImage(sitk_image_factory(volume_array, affine), str(path))
    grid, full = read_grid(path, case="c1"), read_volume(path)
    assert grid.shape == full.shape and grid.array.strides == (0, 0, 0)  # no voxels read
    np.testing.assert_allclose(grid.affine, full.affine, atol=1e-6)
    check_same_grid({"header": grid, "volume": full}, "c1")
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"not a nifti header" * 3))
    with pytest.raises(DataError, match="case 'c1'.*junk.nii.gz.*cannot read NIfTI"):
        read_grid(tmp_path / "junk.nii.gz", case="c1")


def test_truncated_gzip_is_data_error(tmp_path, volume_array, affine_factory, nifti_writer):
    path = nifti_writer(tmp_path / "x.nii.gz", np.random.default_rng(0).normal(size=(40, 40, 20)), affine_factory())
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="case 'c2'.*x.nii.gz.*cannot read NIfTI"):
        read_volume(path, case="c2")
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"not a nifti header" * 3))
    with pytest.raises(DataError, match="junk.nii.gz"):
        read_volume(tmp_path / "junk.nii.gz")


def test_4d_is_rejected_but_trailing_singleton_accepted(tmp_path, affine_factory, nifti_writer):
    affine = affine_factory()
    with pytest.raises(DataError, match="case 'c3'.*expected a 3D volume.*\\(4, 4, 3, 2\\)"):
        read_volume(nifti_writer(tmp_path / "t.nii.gz", np.zeros((4, 4, 3, 2), np.float32), affine), case="c3")
    single = read_volume(nifti_writer(tmp_path / "s.nii.gz", np.ones((4, 4, 3, 1), np.float32), affine))
    assert single.shape == (4, 4, 3)


def test_nan_voxels_are_rejected(tmp_path, volume_array, affine_factory, nifti_writer):
    volume_array[1, 2, 3] = np.nan
    with pytest.raises(DataError, match="case 'c4'.*nan.nii.gz.*1 NaN/inf voxels.*\\(1, 2, 3\\)"):
        read_volume(nifti_writer(tmp_path / "nan.nii.gz", volume_array, affine_factory()), case="c4")


def _rz(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


def _stretched(affine: np.ndarray) -> np.ndarray:
    return affine @ np.diag([1.0, 1.0, 1.01, 1.0])  # third voxel size +1 %


def _shifted(affine: np.ndarray) -> np.ndarray:
    moved = affine.copy()
    moved[2, 3] += 0.01  # 10 micrometres, above the 1e-3 mm tolerance
    return moved


def _rotated(affine: np.ndarray) -> np.ndarray:
    turned = affine.copy()
    turned[:3, :3] = _rz(0.5) @ affine[:3, :3]
    return turned


@pytest.mark.parametrize(
    "change, what",
    [(lambda a: a, "shape"), (_stretched, "spacing"), (_shifted, "origin"), (_rotated, "direction")],
)
def test_grid_mismatch_names_case_files_and_difference(affine_factory, change, what):
    affine = affine_factory()
    water = Volume(np.zeros((4, 4, 3), np.float32), affine, "c_0000.nii.gz")
    other_shape = (4, 4, 2) if what == "shape" else (4, 4, 3)
    fat = Volume(np.zeros(other_shape, np.float32), change(affine), "c_0001.nii.gz")
    within_tolerance = affine.copy()
    within_tolerance[:3] += 1e-5
    check_same_grid({"water": water, "close": Volume(water.array, within_tolerance, "close.nii.gz")}, "ok")
    with pytest.raises(DataError) as err:
        check_same_grid({"water": water, "fat": fat}, "case7")
    message = str(err.value)
    assert "case7" in message and "c_0000.nii.gz" in message and "c_0001.nii.gz" in message
    assert f"{what} (" in message and " vs (" in message


def test_unknown_format(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="unknown format"):
        read_volume(tmp_path / "x.png")
