"""Array containers: MATLAB .mat (v5 and v7.3), plain HDF5 and NumPy .npz.

Each file is opened as an :class:`ArrayFile` that lists its numeric variables with
their *logical* shape (one sample, rows x cols [x bands]) and reads them on demand in
that layout. The format is detected from the file's signature, never its extension.

Axis conventions per container (documented because they differ):
  * MATLAB v5 (``scipy.io.loadmat``): arrays are H x W [x C [x N]] as in MATLAB.
  * MATLAB v7.3 (HDF5 written by MATLAB): HDF5 stores MATLAB's column-major arrays
    with the axes reversed (an H x W x C image reads as C x W x H), so every variable
    is transposed back (all axes reversed) to H x W [x C [x N]].
  * plain HDF5 (e.g. PanCollection ``gt/ms/lms/pan``): channels first, N x C x H x W
    (or C x H x W, or H x W), as written from PyTorch/NumPy.
  * .npz: H x W [x C], or N x H x W x C for a stack of samples.
For 4-D variables one sample is read (``index``); the N axis is the last one for
MATLAB files and the first one for HDF5 and .npz.

Values are returned as stored (no scaling); the scale is decided by the caller.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.errors import InputError

_HDF5_SIG = b"\x89HDF\r\n\x1a\n"
_TIFF_SIGS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ZIP_SIGS = (b"PK\x03\x04", b"PK\x05\x06")


def sniff_format(path: Path) -> str:
    """Return ``'mat5'``, ``'hdf5'``, ``'npz'`` or ``'tiff'`` from the file's first bytes.

    Raises InputError for a missing, empty or unrecognised file.
    """
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    with open(path, "rb") as f:
        head = f.read(2048 + 8)
    if not head:
        raise InputError(f"empty file: {path}")
    # HDF5 puts its signature at 0 or after a user block of 512, 1024, 2048... bytes
    # (MATLAB v7.3 files use a 512-byte user block holding the MATLAB text header).
    if any(head[off : off + 8] == _HDF5_SIG for off in (0, 512, 1024, 2048)):
        return "hdf5"
    if head[:4] in _TIFF_SIGS:
        return "tiff"
    if head[:4] in _ZIP_SIGS:
        return "npz"
    if len(head) >= 128 and head[:6] == b"MATLAB" and head[126:128] in (b"IM", b"MI"):
        return "mat5"
    if head.startswith(b"MATLAB 7.3"):
        raise InputError(f"corrupt or truncated MATLAB v7.3 file (no HDF5 signature): {path}")
    raise InputError(
        f"unrecognised or corrupt file {path}: not a MATLAB .mat (v5 or v7.3), HDF5, .npz or GeoTIFF "
        "(MATLAB v4 files are not supported)"
    )


class ArrayFile:
    """A container of named numeric arrays; see the module docstring for axis layouts."""

    kind: str = "?"

    def __init__(self, path: Path) -> None:
        self.path = path

    def names(self) -> list[str]:
        """Names of the numeric array variables (metadata strings excluded)."""
        raise NotImplementedError

    def shape(self, name: str) -> tuple[int, ...]:
        """Logical shape of one sample: (H, W) or (H, W, C)."""
        raise NotImplementedError

    def nsamples(self, name: str) -> int:
        """Number of samples stacked in the variable (1 unless it is 4-D)."""
        raise NotImplementedError

    def read(self, name: str, index: int = 0) -> np.ndarray:
        """One sample as (H, W) or (H, W, C), dtype as stored."""
        raise NotImplementedError

    def scalar(self, name: str) -> int | float | str | None:
        """A metadata variable (``sensor``, ``ratio``, ``L``...) as a Python scalar/str, or None."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> str:
        """``name (shape dtype)`` for every numeric variable, for error messages."""
        return ", ".join(f"{n} {self._raw_shape(n)}" for n in self.names()) or "none"

    def _raw_shape(self, name: str) -> str:
        return "x".join(str(s) for s in self.shape(name))

    def _check_index(self, name: str, index: int) -> int:
        n = self.nsamples(name)
        if not -n <= index < n:
            raise InputError(f"sample index {index} out of range: {self.path.name} holds {n} samples of '{name}'")
        return index % n


def _is_numeric(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind in "biuf" and a.size > 0


def _to_scalar(a: Any) -> int | float | str | None:
    a = np.asarray(a)
    if a.dtype.kind in "US":
        s = "".join(str(x) for x in a.ravel())
        return s.strip()
    if a.dtype.kind in "biuf" and a.size == 1:
        v = a.ravel()[0].item()
        return int(v) if float(v).is_integer() else float(v)
    return None


class _DictFile(ArrayFile):
    """Containers fully loaded into memory (.mat v5, .npz); 4-D sample axis given by ``naxis``."""

    def __init__(self, path: Path, data: dict[str, Any], kind: str, naxis: int) -> None:
        super().__init__(path)
        self.kind = kind
        self._data = data
        self._naxis = naxis  # axis of the sample index for 4-D arrays

    def names(self) -> list[str]:
        return [k for k, v in self._data.items() if _is_numeric(v) and v.ndim >= 2 and v.size > 1]

    def _get(self, name: str) -> np.ndarray:
        a = self._data[name]
        if not _is_numeric(a):
            raise InputError(f"variable '{name}' in {self.path.name} is not a numeric array")
        return a

    def shape(self, name: str) -> tuple[int, ...]:
        s = self._get(name).shape
        if len(s) == 4:
            s = tuple(d for i, d in enumerate(s) if i != self._naxis % 4)
        return s

    def nsamples(self, name: str) -> int:
        a = self._get(name)
        return a.shape[self._naxis] if a.ndim == 4 else 1

    def read(self, name: str, index: int = 0) -> np.ndarray:
        a = self._get(name)
        if a.ndim == 4:
            a = np.take(a, self._check_index(name, index), axis=self._naxis)
        return np.asarray(a)

    def scalar(self, name: str) -> int | float | str | None:
        return _to_scalar(self._data[name]) if name in self._data else None


def _open_mat5(path: Path) -> ArrayFile:
    import scipy.io

    try:
        data = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True)
    except Exception as e:  # scipy raises OSError/ValueError/TypeError/zlib errors on damage
        raise InputError(f"corrupt or truncated MATLAB v5 file {path}: {_one_line(e)}") from None
    data = {k: v for k, v in data.items() if not k.startswith("__")}
    return _DictFile(path, data, "MATLAB v5", naxis=3)


def _open_npz(path: Path) -> ArrayFile:
    try:
        with np.load(str(path), allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise InputError(f"corrupt or truncated .npz file {path}: {_one_line(e)}") from None
    return _DictFile(path, data, "NPZ", naxis=0)


class _H5File(ArrayFile):
    """HDF5, read lazily; ``matlab`` selects MATLAB v7.3 axis reversal."""

    def __init__(self, path: Path, h5: Any, matlab: bool) -> None:
        super().__init__(path)
        self._h5 = h5
        self._matlab = matlab
        self.kind = "MATLAB v7.3" if matlab else "HDF5"
        import h5py

        self._ds = {k: v for k, v in h5.items() if isinstance(v, h5py.Dataset)}

    def _is_char(self, ds: Any) -> bool:
        cls = ds.attrs.get("MATLAB_class", b"")
        return (cls.decode() if isinstance(cls, bytes) else str(cls)) == "char"

    def names(self) -> list[str]:
        return [
            k
            for k, d in self._ds.items()
            if d.dtype.kind in "biuf" and len(d.shape) >= 2 and d.size > 1 and not self._is_char(d)
        ]

    def _get(self, name: str) -> Any:
        d = self._ds.get(name)
        if d is None or d.dtype.kind not in "biuf":
            raise InputError(f"variable '{name}' in {self.path.name} is not a numeric array")
        return d

    def shape(self, name: str) -> tuple[int, ...]:
        s = tuple(self._get(name).shape)
        if self._matlab:
            s = s[::-1]  # H x W [x C [x N]]
            return s[:3] if len(s) == 4 else s
        if len(s) == 4:  # N x C x H x W
            return (s[2], s[3], s[1])
        if len(s) == 3:  # C x H x W
            return (s[1], s[2], s[0])
        return s

    def nsamples(self, name: str) -> int:
        s = self._get(name).shape
        if len(s) != 4:
            return 1
        return s[0]  # N first in HDF5 (MATLAB's last axis is stored first)

    def read(self, name: str, index: int = 0) -> np.ndarray:
        d = self._get(name)
        try:
            if d.ndim == 4:
                a = np.asarray(d[self._check_index(name, index)])
            else:
                a = np.asarray(d[()])
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"corrupt or truncated HDF5 file {self.path}: {_one_line(e)}") from None
        if self._matlab:
            return np.ascontiguousarray(a.T)  # C x W x H -> H x W x C
        if a.ndim == 3:
            return np.ascontiguousarray(np.moveaxis(a, 0, -1))  # C x H x W -> H x W x C
        return a

    def scalar(self, name: str) -> int | float | str | None:
        d = self._ds.get(name)
        if d is None:
            return None
        try:
            a = np.asarray(d[()])
        except Exception:
            return None
        if self._is_char(d) and a.dtype.kind in "iu":
            return "".join(chr(c) for c in a.T.ravel() if c).strip()
        if a.dtype.kind in "OS":
            v = a.ravel()[0] if a.ndim else a.item()
            return (v.decode() if isinstance(v, bytes) else str(v)).strip()
        return _to_scalar(a)

    def close(self) -> None:
        self._h5.close()


def _open_hdf5(path: Path) -> ArrayFile:
    import h5py

    try:
        h5 = h5py.File(str(path), "r")
    except Exception as e:
        raise InputError(f"corrupt or truncated HDF5/MATLAB v7.3 file {path}: {_one_line(e)}") from None
    with open(path, "rb") as f:
        header = f.read(128)
    matlab = header.startswith(b"MATLAB") or any("MATLAB_class" in d.attrs for d in h5.values())
    return _H5File(path, h5, matlab)


def open_array_file(path: Path, fmt: str | None = None) -> ArrayFile:
    """Open a .mat (v5/v7.3), HDF5 or .npz file by its signature; InputError if damaged."""
    fmt = fmt or sniff_format(path)
    if fmt == "mat5":
        return _open_mat5(path)
    if fmt == "hdf5":
        return _open_hdf5(path)
    if fmt == "npz":
        return _open_npz(path)
    raise InputError(f"{path} is a {fmt} file, not an array container (.mat/.h5/.npz)")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:200] or type(e).__name__
