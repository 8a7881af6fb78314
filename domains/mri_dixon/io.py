"""Reading, checking, re-orienting and writing Dixon MRI volumes.

Every reader returns a :class:`Volume` whose ``affine`` follows the nibabel convention: it maps voxel indices
``(i, j, k)`` of ``array[i, j, k]`` to RAS+ world millimetres. SimpleITK images (DICOM, MHA/MHD, NRRD) are LPS+, so
their affine is ``diag(-1, -1, 1) @ [direction @ diag(spacing) | origin]`` and the array ``(Z, Y, X)`` is transposed
to ``(X, Y, Z)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform
from nibabel.spatialimages import HeaderDataError
from nibabel.wrapstruct import WrapStructError

from segsuite.core.errors import DataError
from segsuite.core.gz import ERRORS as GZ_ERRORS
from segsuite.core.gz import gunzip, gzipped

NIFTI_SUFFIXES = (".nii", ".nii.gz")
SITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
RAS_ORNT = axcodes2ornt("RAS")
SPACING_ATOL, ORIGIN_ATOL, DIRECTION_ATOL = 1e-3, 1e-3, 1e-4  # grid tolerances: mm, mm, direction cosines
_READ_ERRORS = (*GZ_ERRORS, ValueError, ImageFileError, HeaderDataError, WrapStructError, RuntimeError)


@dataclass
class Volume:
    """One 3D image on a grid: ``array`` ``(X, Y, Z)`` (float32 images, integer labels), ``affine`` the 4x4 float64
    voxel-to-RAS+ (mm) matrix, ``header`` the NIfTI header it was read from (a written prediction keeps its
    qform/sform fields; ``None`` for other formats)."""

    array: np.ndarray
    affine: np.ndarray
    path: str | None = None
    header: nib.Nifti1Header | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along each array axis, ``(3,)``."""
        return voxel_spacing(self.affine)


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Column norms of the 3x3 part of ``affine``: voxel size in mm per array axis, ``(3,)``."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def _describe(path: str | os.PathLike, case: str | None) -> str:
    return f"case {case!r}, file {str(path)!r}" if case else f"file {str(path)!r}"


def _as_3d(array: np.ndarray, path: str | os.PathLike, case: str | None) -> np.ndarray:
    """Drop trailing singleton axes (e.g. a NIfTI ``(X, Y, Z, 1)``); anything else that is not 3D is an error."""
    shape = array.shape
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise DataError(f"{_describe(path, case)}: expected a 3D volume, got shape {shape} ({len(shape)}D); give one "
                        "3D image per channel")
    return array


def _checked_array(array: np.ndarray, path: str | os.PathLike, case: str | None) -> np.ndarray:
    """3D, float data as float32, integer data kept; NaN/inf voxels are an error."""
    array = _as_3d(np.asarray(array), path, case)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32, copy=False)
        bad = ~np.isfinite(array)
        if bad.any():
            raise DataError(f"{_describe(path, case)}: {int(bad.sum())} NaN/inf voxels (first at index "
                            f"{tuple(int(i) for i in np.argwhere(bad)[0])}); images must be finite")
    elif not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{_describe(path, case)}: unsupported voxel type {array.dtype}; expected numbers")
    return dense(array)


def dense(array: np.ndarray) -> np.ndarray:
    """``array`` itself if it is one block of memory in C or Fortran order (a NIfTI's voxels are x fastest: a C-order
    copy cost 22 ms a 256 x 256 x 64 float32 channel), else a copy in its own axis order."""
    return array if array.flags.c_contiguous or array.flags.f_contiguous else np.array(array, order="K")


def _format(path: Path, case: str | None) -> str:
    """``NIfTI`` or ``image`` (SimpleITK) by the file's ending; a DataError for a missing file or another ending."""
    if not path.exists():
        raise DataError(f"{_describe(path, case)}: no such file or directory")
    name = path.name.lower()
    if not name.endswith(NIFTI_SUFFIXES + SITK_SUFFIXES):
        raise DataError(f"{_describe(path, case)}: unknown format; accepted: "
                        f"{', '.join(NIFTI_SUFFIXES + SITK_SUFFIXES)} or a DICOM directory")
    return "NIfTI" if name.endswith(NIFTI_SUFFIXES) else "image"


def read_nifti(path: str | os.PathLike, case: str | None = None) -> Volume:
    """Read a 3D NIfTI (.nii / .nii.gz); scaling (scl_slope/inter) is applied by nibabel. A .nii.gz is inflated in
    one call (:func:`segsuite.core.gz.gunzip`, without the GIL: channels read in threads overlap), about a third
    faster than nibabel's streamed reads of it with zlib, and faster again with igzip."""
    path = Path(path)
    _format(path, case)
    try:
        if path.name.lower().endswith(".gz"):
            raw = gunzip(path.read_bytes())
            two = 540 in (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big"))  # sizeof_hdr
            img = (nib.Nifti2Image if two else nib.Nifti1Image).from_bytes(raw)
        else:
            img = nib.load(str(path))
        array = np.asanyarray(img.dataobj)  # forces the read: truncation shows here
    except _READ_ERRORS as err:
        raise DataError(f"{_describe(path, case)}: cannot read NIfTI ({type(err).__name__}: {err})") from err
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DataError(f"{_describe(path, case)}: not a NIfTI image ({type(img).__name__})")
    return Volume(_checked_array(array, path, case), img.affine.astype(np.float64), str(path), img.header.copy())


def sitk_to_volume(image: sitk.Image, path: str | os.PathLike, case: str | None = None) -> Volume:
    """Convert a 3D scalar SimpleITK image (LPS+) into a RAS+ :class:`Volume`."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(f"{_describe(path, case)}: {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                        "expected a scalar image")
    array = sitk.GetArrayFromImage(image)  # (Z, Y, X) for 3D, (T, Z, Y, X) for 4D
    array = np.transpose(array, tuple(range(array.ndim))[::-1])  # (X, Y, Z[, T])
    return Volume(_checked_array(array, path, case), sitk_affine(image), str(path))


def sitk_affine(image: sitk.Image | sitk.ImageFileReader) -> np.ndarray:
    """The RAS+ affine ``(4, 4)`` of a SimpleITK image (or of a file reader's header)."""
    dim = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(np.asarray(image.GetSpacing(), dtype=np.float64)[:3])
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=np.float64)[:3]
    return affine


def read_sitk_file(path: str | os.PathLike, case: str | None = None) -> Volume:
    """Read an MHA/MHD/NRRD file with SimpleITK."""
    _format(Path(path), case)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise DataError(f"{_describe(path, case)}: cannot read image ({err})") from err
    return sitk_to_volume(image, path, case)


def list_dicom_series(directory: str | os.PathLike) -> list[dict]:
    """Series in a DICOM directory: ``[{"uid", "description", "files"}]`` sorted by UID."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"DICOM directory {str(directory)!r} does not exist or is not a directory")
    series = []
    for uid in sorted(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(directory))):
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(directory), uid))
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        reader.ReadImageInformation()
        description = reader.GetMetaData("0008|103e").strip() if reader.HasMetaDataKey("0008|103e") else ""
        series.append({"uid": uid, "description": description, "files": files})
    return series


def pick_series(series: list[dict], wanted: str | None, directory: Path) -> dict:
    """Select a series by UID or exact description; one series needs no selector."""
    listing = "; ".join(f"uid={s['uid']} description={s['description']!r} ({len(s['files'])} files)" for s in series)
    if not series:
        raise DataError(f"DICOM directory {str(directory)!r} holds no DICOM series")
    if wanted is None and len(series) == 1:
        return series[0]
    if wanted is None:
        raise DataError(f"DICOM directory {str(directory)!r} holds {len(series)} series; pick one by UID or "
                        f"description: {listing}")
    matches = [s for s in series if wanted in (s["uid"], s["description"])]
    if len(matches) != 1:
        problem = "no series matches" if not matches else f"{len(matches)} series match"
        raise DataError(f"DICOM directory {str(directory)!r}: {problem} {wanted!r} (by UID or description); "
                        f"available: {listing}")
    return matches[0]


def read_dicom_series(directory: str | os.PathLike, series: str | None = None, case: str | None = None) -> Volume:
    """Read one DICOM series from ``directory``; ``series`` is a SeriesInstanceUID or SeriesDescription."""
    chosen = pick_series(list_dicom_series(directory), series, Path(directory))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(chosen["files"])
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise DataError(f"{_describe(directory, case)}: cannot read DICOM series {chosen['uid']} ({err})") from err
    return sitk_to_volume(image, directory, case)


def read_volume(path: str | os.PathLike, case: str | None = None, series: str | None = None) -> Volume:
    """Read NIfTI, MHA/MHD, NRRD or a DICOM directory, chosen by suffix (a directory is DICOM)."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path, series, case)
    return (read_nifti if _format(path, case) == "NIfTI" else read_sitk_file)(path, case)


def read_grid(path: str | os.PathLike, case: str | None = None) -> Volume:
    """The grid of a NIfTI/MHA/MHD/NRRD file from its header alone (``array``: a broadcast zero, no voxels read)."""
    path = Path(path)
    kind = _format(path, case)
    try:
        if kind == "NIfTI":
            img = nib.load(str(path))
            shape, affine = img.shape, img.affine.astype(np.float64)
        else:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            shape, affine = reader.GetSize(), sitk_affine(reader)
    except _READ_ERRORS as err:
        raise DataError(f"{_describe(path, case)}: cannot read {kind} ({type(err).__name__}: {err})") from err
    return Volume(_as_3d(np.broadcast_to(np.float32(0), shape), path, case), affine, str(path))


def grid_difference(a: Volume, b: Volume) -> str | None:
    """Describe how the grids of ``a`` and ``b`` differ (shape, spacing, origin, direction), or ``None``."""
    sa, sb = a.spacing, b.spacing
    da, db = a.affine[:3, :3] / sa, b.affine[:3, :3] / sb
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    if not np.allclose(sa, sb, rtol=0, atol=SPACING_ATOL):
        return f"spacing {_fmt(sa)} vs {_fmt(sb)} mm"
    if not np.allclose(a.affine[:3, 3], b.affine[:3, 3], rtol=0, atol=ORIGIN_ATOL):
        return f"origin {_fmt(a.affine[:3, 3])} vs {_fmt(b.affine[:3, 3])} mm"
    if not np.allclose(da, db, rtol=0, atol=DIRECTION_ATOL):
        return f"direction {_fmt(da.T.ravel())} vs {_fmt(db.T.ravel())} (column-wise cosines)"
    return None


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in np.ravel(values)) + ")"


def check_same_grid(volumes: dict[str, Volume], case: str) -> None:
    """Raise :class:`DataError` unless all ``volumes`` (channel name -> Volume) share the first one's grid."""
    (first_name, first), *others = volumes.items()
    for name, volume in others:
        diff = grid_difference(first, volume)
        if diff:
            raise DataError(f"case {case!r}: {name} file {volume.path!r} is not on the grid of {first_name} file "
                            f"{first.path!r}: {diff}; all channels and the label of a case must share one grid")


def to_canonical(volume: Volume) -> Volume:
    """Permute/flip array axes so they point (closest to) R, A, S; the world geometry is unchanged (as
    ``nib.as_closest_canonical``, for any format; ``header`` is dropped: it describes the original orientation)."""
    transform = ornt_transform(io_orientation(volume.affine), RAS_ORNT)
    array = dense(apply_orientation(volume.array, transform))
    return Volume(array, canonical_affine(volume.affine, volume.shape), volume.path)


def canonical_affine(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The affine of :func:`to_canonical`'s output for a volume of ``shape`` with ``affine``, ``(4, 4)``."""
    return affine @ inv_ornt_aff(ornt_transform(io_orientation(affine), RAS_ORNT), shape)


def from_canonical(array: np.ndarray, reference: Volume) -> np.ndarray:
    """Bring an array on the canonical grid of ``reference`` back to ``reference``'s own axes, ``(X, Y, Z)``."""
    restored = np.ascontiguousarray(apply_orientation(array, from_canonical_ornt(reference.affine)))
    if restored.shape != reference.shape:
        raise DataError(f"array of shape {array.shape} is not on the canonical grid of {reference.path!r} (restored "
                        f"shape {restored.shape}, expected {reference.shape})")
    return restored


def from_canonical_ornt(affine: np.ndarray) -> np.ndarray:
    """The nibabel orientation ``(3, 2)`` from RAS+ back to the array axes of ``affine``."""
    return ornt_transform(RAS_ORNT, io_orientation(affine))


def write_nifti(path: str | os.PathLike, array: np.ndarray, reference: Volume) -> Path:
    """Write ``array`` ``(X, Y, Z)`` on ``reference``'s grid: same shape, affine and (NIfTI reference) header
    qform/sform fields, else scanner codes. Float arrays must be finite."""
    path = Path(path)
    if array.shape != reference.shape:
        raise DataError(f"cannot write {str(path)!r}: array shape {array.shape} != reference shape {reference.shape}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise DataError(f"cannot write {str(path)!r}: array holds NaN/inf values")
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise DataError(f"output {str(path)!r}: NIfTI names end with .nii or .nii.gz")
    if reference.header is None:
        img = nib.Nifti1Image(array, reference.affine)
        img.set_sform(reference.affine, code="scanner")
        img.set_qform(reference.affine, code="scanner")
    else:
        header = reference.header.copy()
        header.set_data_dtype(array.dtype)
        header.set_slope_inter(1.0, 0.0)
        header["cal_min"], header["cal_max"] = 0, 0
        image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        img = image_class(array, reference.affine, header)  # the header's own affine: qform/sform fields untouched
    if path.name.lower().endswith(".gz"):  # one call through igzip (core.gz), not nibabel's streamed zlib
        path.write_bytes(gzipped(img.to_bytes()))
    else:
        nib.save(img, str(path))
    return path


def write_label(path: str | os.PathLike, label: np.ndarray, reference: Volume) -> Path:
    """Write a label volume ``(X, Y, Z)`` as uint8 (values <= 255) or int16, on ``reference``'s grid."""
    label = np.asarray(label)
    if not np.issubdtype(label.dtype, np.integer) and not np.issubdtype(label.dtype, np.bool_):
        raise DataError(f"cannot write {str(path)!r}: labels must be integers, got {label.dtype}")
    low, high = (int(label.min()), int(label.max())) if label.size else (0, 0)
    if low < 0 or high > np.iinfo(np.int16).max:
        raise DataError(f"cannot write {str(path)!r}: label values {low}..{high} outside 0..32767")
    return write_nifti(path, label.astype(np.uint8 if high <= 255 else np.int16, copy=False), reference)


def check_channel_files(folder: Path, cases: list[str], channel_names: list[str], ending: str) -> None:
    """No case in ``folder`` has channel files beyond ``CASE_<n-1><ending>``, the last that dataset.json's
    ``channel_names`` lists (nnU-Net checks this too): a DataError names the case, the extra files and the channel
    list, where they would otherwise be silently left out. (A missing channel file is named when the case is read.)"""
    if not folder.is_dir():
        return
    found: dict[str, set[int]] = {}
    for path in folder.iterdir():
        name, cut = path.name, len(ending) + 5
        if name.endswith(ending) and len(name) > cut and name[-cut] == "_" and name[-cut + 1 : -len(ending)].isdigit():
            found.setdefault(name[:-cut], set()).add(int(name[-cut + 1 : -len(ending)]))
    for case in cases:
        extra = sorted(i for i in found.get(case, ()) if i >= len(channel_names))
        if extra:
            listed = ", ".join(f"{i}: {n}" for i, n in enumerate(channel_names))
            raise DataError(f"case {case!r} in {folder} has extra channel files "
                            f"{[f'{case}_{i:04d}{ending}' for i in extra]}, but dataset.json lists "
                            f"{len(channel_names)} channel(s) ({listed}); list every channel in channel_names or "
                            "remove the extra files")
