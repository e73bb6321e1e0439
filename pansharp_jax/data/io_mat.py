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

Size guard: a damaged or hostile header can declare an array of terabytes. Before any
array is read its declared shape is checked by :func:`check_declared_size`: no dimension
may exceed :data:`MAX_ARRAY_DIM` (2**20) and no array :data:`MAX_ARRAY_BYTES` (2**34
bytes = 16 GiB); the environment variables ``PANSHARP_MAX_ARRAY_DIM`` and
``PANSHARP_MAX_ARRAY_BYTES`` override them (read at every call). .npy members of an
.npz are parsed and read here (not by ``np.load``, which allocates what the header
declares before reading), .mat v5 headers are listed with ``scipy.io.whosmat`` before
``loadmat``, HDF5 datasets are checked before they are sliced.

.mat v5 structure check: scipy's compiled v5 reader trusts the element types it finds
and crashes the interpreter (segmentation fault) on some damaged files, e.g. a data
element whose type code was zeroed. So the element tree of a v5 file (tags, sizes,
nesting, compressed variables decompressed up to the size limit) is walked first and
damaged files are refused with an InputError before scipy sees them.
"""

from __future__ import annotations

import mmap
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.errors import InputError

_HDF5_SIG = b"\x89HDF\r\n\x1a\n"
_TIFF_SIGS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ZIP_SIGS = (b"PK\x03\x04", b"PK\x05\x06")

MAX_ARRAY_BYTES = 2**34  # largest array a reader will allocate (bytes); env PANSHARP_MAX_ARRAY_BYTES
MAX_ARRAY_DIM = 2**20  # largest single dimension a reader accepts; env PANSHARP_MAX_ARRAY_DIM
ENV_MAX_ARRAY_BYTES = "PANSHARP_MAX_ARRAY_BYTES"
ENV_MAX_ARRAY_DIM = "PANSHARP_MAX_ARRAY_DIM"
_MAX_SCALAR_ELEMENTS = 4096  # metadata variables (sensor, ratio, L) larger than this are ignored
_MAX_CHUNK_INFO_CALLS = 1024  # chunk-index checks without H5Dchunk_iter cost O(chunks**2)


def _env_limit(var: str, default: int) -> int:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(float(raw)) if "e" in raw.lower() else int(raw, 0)
    except ValueError:
        raise InputError(f"{var} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise InputError(f"{var} must be a positive integer, got {raw!r}")
    return value


def array_limits() -> tuple[int, int]:
    """``(max_bytes, max_dim)`` for one array: the module constants or their env overrides."""
    return _env_limit(ENV_MAX_ARRAY_BYTES, MAX_ARRAY_BYTES), _env_limit(ENV_MAX_ARRAY_DIM, MAX_ARRAY_DIM)


def check_declared_size(what: str, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse an array whose *declared* shape is too large, before anything is allocated.

    Args:
      what: names the array and its file for the message (e.g. ``"'pan' in x.npz"``).
      shape: the shape the file's header declares (any rank; negative values refused).
      itemsize: bytes per element.

    Raises:
      InputError: a dimension is negative or above the dimension limit, or
        ``prod(shape) * itemsize`` is above the byte limit (see :func:`array_limits`).
    """
    max_bytes, max_dim = array_limits()
    dims = [int(d) for d in shape]
    text = "x".join(str(d) for d in dims) or "scalar"
    if any(d < 0 for d in dims):
        raise InputError(f"{what} declares an invalid shape {text} (damaged header?)")
    if any(d > max_dim for d in dims):
        raise InputError(
            f"{what} declares shape {text}: a dimension above the limit {max_dim} "
            f"(damaged header? raise {ENV_MAX_ARRAY_DIM} if the file is right)"
        )
    nbytes = int(itemsize)
    for d in dims:
        nbytes *= d
    if nbytes > max_bytes:
        raise InputError(
            f"{what} declares shape {text} ({nbytes} bytes), above the limit of {max_bytes} bytes "
            f"(damaged header? raise {ENV_MAX_ARRAY_BYTES} if the file is right)"
        )


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

    def dtype_of(self, name: str) -> str | None:
        """The stored type of any variable (numeric or not) as a short string, None if absent."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> str:
        """``name (shape dtype)`` for every numeric variable, for error messages."""
        return ", ".join(f"{printable(n)} {self._raw_shape(n)}" for n in self.names()) or "none"

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
    if a is None:
        return None
    a = np.asarray(a)
    if a.size > _MAX_SCALAR_ELEMENTS:
        return None
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

    def dtype_of(self, name: str) -> str | None:
        if name not in self._data:
            return None
        v = self._data[name]
        return str(v.dtype) if isinstance(v, np.ndarray) else type(v).__name__


# bytes per element of a MATLAB class; anything else (cell, struct, object...) counts 8
_MAT_ITEMSIZE = {
    "double": 8, "single": 4, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4,
    "uint32": 4, "int64": 8, "uint64": 8, "char": 4, "logical": 1,
}  # fmt: skip


# MATLAB v5 element types (miINT8...) that hold plain data, and the container types
_MI_DATA = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 16, 17, 18})
_MI_MATRIX, _MI_COMPRESSED, _MI_INT32, _MI_UINT32 = 14, 15, 5, 6
# mxCLASS codes whose contents are further miMATRIX elements: cell, struct, object, function, opaque
_MX_CONTAINERS = frozenset({1, 2, 3, 16, 17})
_MX_OPAQUE = 17
_MAT5_MAX_DEPTH = 32


class _Mat5Damage(Exception):
    """A structural problem in a v5 file (turned into an InputError by the caller)."""


def _mat5_elements(buf: Any, start: int, end: int, order: str, pad: bool = True) -> Iterator[tuple[int, int, int]]:
    """``(type, data_start, data_end)`` for each tagged element in ``buf[start:end]``.

    Elements inside an array are padded to 8 bytes; top-level ones are not (a compressed
    variable is followed directly by the next one)."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise _Mat5Damage(f"truncated element tag at byte {pos}")
        (word,) = struct.unpack_from(order + "I", buf, pos)
        small = word >> 16
        if small:  # small data element: type and size packed in 4 bytes, data in the next 4
            if small > 4:
                raise _Mat5Damage(f"bad small-element size {small} at byte {pos}")
            yield word & 0xFFFF, pos + 4, pos + 4 + small
            pos += 8
            continue
        (nbytes,) = struct.unpack_from(order + "I", buf, pos + 4)
        data_start, data_end = pos + 8, pos + 8 + nbytes
        if data_end > end:
            raise _Mat5Damage(f"element at byte {pos} declares {nbytes} bytes, only {end - data_start} remain")
        yield word, data_start, data_end
        pos = data_end + (-nbytes % 8 if pad else 0)


# bytes per element that scipy allocates for each mxCLASS (containers: one object pointer)
_MX_ITEMSIZE = {1: 8, 2: 8, 3: 8, 4: 4, 6: 8, 7: 4, 8: 1, 9: 1, 10: 2, 11: 2, 12: 4, 13: 4, 14: 8, 15: 8, 16: 8}
_MX_CELL, _MX_STRUCT, _MX_OBJECT, _MX_SPARSE = 1, 2, 3, 5
_MX_COMPLEX_FLAG = 0x800


def _mat5_check_matrix(buf: Any, start: int, end: int, order: str, depth: int, where: str) -> None:
    """Validate one miMATRIX element's contents (flags, dims, name, data or sub-matrices).

    scipy reads exactly the elements the header promises (real and imaginary parts,
    sparse indices, one sub-matrix per cell or struct field) without checking their
    types, so each promised element must be there with a plain-data type.
    """
    if depth > _MAT5_MAX_DEPTH:
        raise _Mat5Damage("variables nested too deeply")
    if start == end:
        return  # an empty matrix
    elements = list(_mat5_elements(buf, start, end, order))
    mdtype, fs, fe = elements[0]
    if mdtype != _MI_UINT32 or fe - fs != 8:
        raise _Mat5Damage(f"damaged array flags at byte {fs}")
    (flags,) = struct.unpack_from(order + "I", buf, fs)
    mx_class, is_complex = flags & 0xFF, bool(flags & _MX_COMPLEX_FLAG)
    if not 1 <= mx_class <= 17:
        raise _Mat5Damage(f"unknown MATLAB array class {mx_class} at byte {fs}")
    children = [e for e in elements[1:] if e[0] == _MI_MATRIX]
    if children and mx_class not in _MX_CONTAINERS:
        raise _Mat5Damage(f"array inside a class-{mx_class} array at byte {children[0][1]}")
    for mdtype, s, _e in elements[1:]:
        if mdtype != _MI_MATRIX and mdtype not in _MI_DATA:
            raise _Mat5Damage(f"element of type {mdtype} at byte {s} inside a class-{mx_class} array")
    if mx_class == _MX_OPAQUE:  # undocumented layout (MATLAB objects): check the parts only
        for _t, s, e in children:
            _mat5_check_matrix(buf, s, e, order, depth + 1, where)
        return
    if len(elements) < 3:
        raise _Mat5Damage(f"array at byte {start} lacks dimensions or name")
    dtype, ds, de = elements[1]
    if dtype not in (_MI_INT32, _MI_UINT32) or (de - ds) % 4 or de - ds < 8:  # some writers use miUINT32
        raise _Mat5Damage(f"damaged array dimensions at byte {ds}")
    dims = struct.unpack_from(f"{order}{(de - ds) // 4}i", buf, ds)
    count = 1
    for d in dims:
        count *= max(d, 0)
    data = [e for e in elements[3:] if e[0] != _MI_MATRIX]
    if mx_class in _MX_ITEMSIZE:
        check_declared_size(where, dims, _MX_ITEMSIZE[mx_class] * (2 if is_complex else 1))
    if mx_class in (_MX_CELL, _MX_STRUCT, _MX_OBJECT):
        nfields = 1
        if mx_class != _MX_CELL:  # [class name,] field-name length, field names
            names = data[1:] if mx_class == _MX_OBJECT else data
            if len(names) < 2:
                raise _Mat5Damage(f"struct at byte {start} lacks its field names")
            (_t, ls, le), (_t2, ns, ne) = names[0], names[1]
            (name_len,) = struct.unpack_from(order + "i", buf, ls) if le - ls >= 4 else (0,)
            nfields = (ne - ns) // name_len if name_len > 0 else 0
        if len(children) < count * nfields:
            raise _Mat5Damage(f"array at byte {start} holds {len(children)} of {count * nfields} parts")
    elif mx_class == _MX_SPARSE:
        if len(data) < 3 + is_complex:
            raise _Mat5Damage(f"sparse array at byte {start} lacks its indices or values")
    elif mx_class != 16 and len(data) < 1 + is_complex:  # numeric or char: real [and imaginary] part
        raise _Mat5Damage(f"array at byte {start} lacks its {'imaginary' if data else 'real'} part")
    for _t, s, e in children:
        _mat5_check_matrix(buf, s, e, order, depth + 1, where)


def check_mat5_structure(path: Path) -> None:
    """Walk a MATLAB v5 file's element tree; InputError if it is damaged or too large.

    Checks every tag (type code known where it is used, size within its parent, the
    small-element format), array flags and dimension elements, nesting depth, and
    decompresses compressed variables up to twice the array byte limit. Does not read
    the data into arrays; scipy does that afterwards.
    """
    max_bytes, _ = array_limits()
    cap = 2 * max_bytes + 65536  # real + imaginary parts and headers
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            order = "<" if buf[126:128] == b"IM" else ">"
            for mdtype, s, e in _mat5_elements(buf, 128, len(buf), order, pad=False):
                if mdtype == _MI_MATRIX:
                    _mat5_check_matrix(buf, s, e, order, 0, f"a variable in {path.name}")
                elif mdtype == _MI_COMPRESSED:
                    z = zlib.decompressobj()
                    try:
                        inner = z.decompress(buf[s:e], cap)
                    except zlib.error as err:
                        raise _Mat5Damage(f"damaged compressed variable at byte {s}: {err}") from None
                    if z.unconsumed_tail:
                        raise InputError(
                            f"a compressed variable in {path.name} expands beyond {cap} bytes "
                            f"(damaged file? raise {ENV_MAX_ARRAY_BYTES} if the file is right)"
                        )
                    tags = list(_mat5_elements(inner, 0, len(inner), order, pad=False))
                    if len(tags) != 1 or tags[0][0] != _MI_MATRIX:
                        raise _Mat5Damage(f"compressed variable at byte {s} does not hold one array")
                    _mat5_check_matrix(inner, tags[0][1], tags[0][2], order, 0, f"a variable in {path.name}")
                else:
                    raise _Mat5Damage(f"top-level element of type {mdtype} at byte {s - 8}")
    except _Mat5Damage as e:
        raise InputError(f"corrupt or truncated MATLAB v5 file {path}: {e}") from None
    except (OSError, ValueError, struct.error) as e:
        raise InputError(f"corrupt or truncated MATLAB v5 file {path}: {_one_line(e)}") from None


def _open_mat5(path: Path) -> ArrayFile:
    import scipy.io

    check_mat5_structure(path)

    try:
        listing = scipy.io.whosmat(str(path))
    except MemoryError:  # a guard failed: let it show
        raise
    except Exception as e:  # scipy raises OSError/ValueError/TypeError/zlib errors on damage
        raise InputError(f"corrupt or truncated MATLAB v5 file {path}: {_one_line(e)}") from None
    for name, shape, cls in listing:
        check_declared_size(f"variable {name!r} in {path.name}", tuple(shape), _MAT_ITEMSIZE.get(cls, 8))
    try:
        data = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True)
    except MemoryError:  # a guard failed: let it show
        raise
    except Exception as e:  # scipy raises OSError/ValueError/TypeError/zlib errors on damage
        raise InputError(f"corrupt or truncated MATLAB v5 file {path}: {_one_line(e)}") from None
    data = {k: v for k, v in data.items() if not k.startswith("__")}
    return _DictFile(path, data, "MATLAB v5", naxis=3)


def _read_npy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray | None:
    """One .npy member, its header checked before its data is read; None for pickled objects."""
    fmt = np.lib.format
    with zf.open(info) as fh:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):  # 3.0 differs only in UTF-8 field names (never an image's)
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise InputError(f"{where} uses .npy format version {version[0]}.{version[1]}, which is not supported")
        if dtype.hasobject:
            return None  # Python objects: never unpickled
        check_declared_size(where, tuple(shape), dtype.itemsize)
        count = 1
        for d in shape:
            count *= int(d)
        nbytes = count * dtype.itemsize
        data = fh.read(nbytes)
        if len(data) != nbytes:
            raise InputError(f"{where} is truncated: {len(data)} of {nbytes} data bytes")
        fh.read()  # to the end of the member, so that zipfile checks its CRC
    a = np.frombuffer(data, dtype=dtype, count=count)
    return a.reshape(shape, order="F" if fortran else "C").copy()


def _open_npz(path: Path) -> ArrayFile:
    max_bytes, _ = array_limits()
    data: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(str(path)) as zf:
            for info in zf.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                where = f"'{key}' in {path.name}"
                if info.file_size > max_bytes + 4096:
                    raise InputError(
                        f"{where} declares {info.file_size} bytes, above the limit of {max_bytes} bytes "
                        f"(damaged file? raise {ENV_MAX_ARRAY_BYTES} if the file is right)"
                    )
                if info.filename.endswith(".npy"):
                    data[key] = _read_npy_member(zf, info, where)
                # other members are not arrays: ignored
    except InputError:
        raise
    except MemoryError:  # a guard failed: let it show
        raise
    except Exception as e:  # zipfile/zlib/numpy raise many types on damaged data
        raise InputError(f"corrupt or truncated .npz file {path}: {_one_line(e)}") from None
    return _DictFile(path, data, "NPZ", naxis=0)


class _H5File(ArrayFile):
    """HDF5, read lazily; ``matlab`` selects MATLAB v7.3 axis reversal."""

    def __init__(self, path: Path, h5: Any, matlab: bool, datasets: dict[str, Any]) -> None:
        super().__init__(path)
        self._h5 = h5
        self._matlab = matlab
        self.kind = "MATLAB v7.3" if matlab else "HDF5"
        self._ds = datasets
        self._char = {k: _h5_is_char(d) for k, d in datasets.items()}

    def names(self) -> list[str]:
        return [
            k
            for k, d in self._ds.items()
            if d.dtype.kind in "biuf" and len(d.shape) >= 2 and (d.size or 0) > 1 and not self._char[k]
        ]

    def _get(self, name: str) -> Any:
        d = self._ds.get(name)
        if d is None or d.dtype.kind not in "biuf" or d.shape is None:
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
        where = f"variable '{name}' in {self.path.name}"
        check_declared_size(where, tuple(d.shape[1:] if d.ndim == 4 else d.shape), d.dtype.itemsize)
        if d.ndim == 4:
            check_declared_size(where, tuple(d.shape), 0)  # the sample axis too is bounded
        try:
            _check_h5_storage(d, self.path, where)
            if d.ndim == 4:
                a = np.asarray(d[self._check_index(name, index)])
            else:
                a = np.asarray(d[()])
        except InputError:
            raise
        except MemoryError:  # a guard failed: let it show
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
        if d is None or d.shape is None or (d.size or 0) > _MAX_SCALAR_ELEMENTS:
            return None
        if d.dtype.kind == "O":  # variable-length: never through libhdf5 (it can loop forever on a damaged heap)
            return _h5_vlen_string(d, self.path)
        try:
            _check_h5_storage(d, self.path, f"variable '{name}' in {self.path.name}")
            a = np.asarray(d[()])
            if self._char[name] and a.dtype.kind in "iu":
                return "".join(chr(c) for c in a.T.ravel().tolist() if 0 < c < 0x110000).strip()
            if a.dtype.kind in "OS":
                if a.size == 0:
                    return None
                v = a.ravel()[0]
                return (v.decode(errors="replace") if isinstance(v, bytes) else str(v)).strip()
            return _to_scalar(a)
        except Exception:
            return None  # unreadable metadata is treated as absent

    def dtype_of(self, name: str) -> str | None:
        d = self._ds.get(name)
        return None if d is None else str(d.dtype)

    def close(self) -> None:
        self._h5.close()


def _check_h5_storage(d: Any, path: Path, where: str) -> None:
    """Refuse a dataset whose storage cannot be right, before HDF5 reads it.

    The HDF5 library trusts its chunk index and can crash the interpreter on a damaged
    one (a chunk at address 0 of size 0, say). So: no external or virtual storage (they
    read other files); contiguous data lies inside the file and holds the whole array;
    every chunk lies inside the file, has a size, sits on the chunk grid within the
    shape, and appears once.
    """
    import h5py

    file_size = path.stat().st_size  # HDF5 reports absolute addresses (user block included)
    dcpl = d.id.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5py.h5d.VIRTUAL or dcpl.get_external_count() > 0:
        raise InputError(f"{where} is stored in other files (virtual or external storage), which is not read")
    if layout == h5py.h5d.CONTIGUOUS:
        offset, size = d.id.get_offset(), d.id.get_storage_size()
        if offset is not None and (size < d.size * d.dtype.itemsize or offset + size > file_size):
            raise InputError(f"{where}: damaged storage ({size} bytes at {offset} in a {file_size}-byte file)")
        return
    if layout != h5py.h5d.CHUNKED:
        return
    chunks, shape = d.chunks, d.shape
    expected = 1
    for n, c in zip(shape, chunks):
        expected *= -(-n // c)
    count = d.id.get_num_chunks()
    if count > expected:
        raise InputError(f"{where}: damaged chunk index ({count} chunks for a {expected}-chunk grid)")
    infos: list[Any] = []
    if hasattr(d.id, "chunk_iter"):  # one pass over the index (HDF5 >= 1.14)
        d.id.chunk_iter(infos.append)
    elif count <= _MAX_CHUNK_INFO_CALLS:  # get_chunk_info(i) walks the index each call
        infos = [d.id.get_chunk_info(i) for i in range(count)]
    else:
        return  # too many chunks to check without chunk_iter: left to HDF5
    if len(infos) != count:
        raise InputError(f"{where}: damaged chunk index ({len(infos)} chunks listed, {count} counted)")
    seen = set()
    for i, info in enumerate(infos):
        at = tuple(info.chunk_offset)
        ok = (
            info.byte_offset is not None
            and info.byte_offset > 0  # address 0 is the superblock, never data
            and info.size > 0
            and info.byte_offset + info.size <= file_size
            and len(at) == len(shape)
            and all(0 <= a < max(n, 1) and a % c == 0 for a, n, c in zip(at, shape, chunks))
            and at not in seen
        )
        if not ok:
            raise InputError(
                f"{where}: damaged chunk index (chunk {i} at {at}, {info.size} bytes at {info.byte_offset})"
            )
        seen.add(at)


def _h5_vlen_string(d: Any, path: Path) -> str | None:
    """A scalar variable-length string dataset, decoded here from the file's global heap.

    libhdf5 walks the whole heap collection on such a read and loops forever on some
    damaged collections (an object of size 0), so the string is located and checked
    here instead: contiguous 16-byte heap ID (length, collection address, index), a
    ``GCOL`` collection inside the file, objects with distinct indices inside it and
    the free-space object ending exactly at its end. Anything else returns None
    (metadata treated as absent).
    """
    try:
        if d.shape not in ((), (1,)) or d.id.get_create_plist().get_layout() != 1:  # CONTIGUOUS
            return None
        offset, size = d.id.get_offset(), d.id.get_storage_size()
        if offset is None or size != 16:
            return None
        with open(path, "rb") as fh:
            fh.seek(offset)
            length, address, index = struct.unpack("<IQI", fh.read(16))
            fh.seek(address)
            head = fh.read(16)
            if len(head) != 16 or head[:5] != b"GCOL\x01":
                return None
            (total,) = struct.unpack_from("<Q", head, 8)
            if not 4096 <= total <= 2**24 or address + total > path.stat().st_size:
                return None
            heap = head + fh.read(total - 16)
        pos, found, seen = 16, None, set()
        while pos + 16 <= total:
            obj, _refs, obj_size = struct.unpack_from("<HH4xQ", heap, pos)
            if obj == 0:  # free space, sized to the end of the collection, ends the objects
                if pos + obj_size != total:
                    return None
                break
            if obj in seen or pos + 16 + obj_size > total:
                return None
            seen.add(obj)
            if obj == index:
                found = heap[pos + 16 : pos + 16 + obj_size]
            pos += 16 + obj_size + (-obj_size % 8)
        if pos > total or found is None or length > len(found) or length > _MAX_SCALAR_ELEMENTS:
            return None
        return found[:length].decode("utf-8", errors="replace").strip()
    except (OSError, ValueError, struct.error):
        return None


def _h5_is_char(ds: Any) -> bool:
    try:
        if "MATLAB_class" not in ds.attrs or ds.attrs.get_id("MATLAB_class").dtype.kind == "O":
            return False  # absent, or variable-length (read through the heap): not what MATLAB writes
        cls = ds.attrs.get("MATLAB_class", b"")
    except Exception:
        return False
    if isinstance(cls, np.ndarray):
        cls = cls.ravel()[0] if cls.size else b""
    return (cls.decode(errors="replace") if isinstance(cls, bytes) else str(cls)) == "char"


def _open_hdf5(path: Path) -> ArrayFile:
    import h5py

    try:
        h5 = h5py.File(str(path), "r")
    except MemoryError:  # a guard failed: let it show
        raise
    except Exception as e:
        raise InputError(f"corrupt or truncated HDF5/MATLAB v7.3 file {path}: {_one_line(e)}") from None
    try:
        datasets = {k: v for k, v in h5.items() if isinstance(v, h5py.Dataset)}
        matlab = any("MATLAB_class" in d.attrs for d in datasets.values())
        for d in datasets.values():  # touch the metadata now, so damage shows here
            _ = (d.shape, d.dtype, d.size)
    except MemoryError:  # a guard failed: let it show
        raise
    except Exception as e:
        h5.close()
        raise InputError(f"corrupt or truncated HDF5/MATLAB v7.3 file {path}: {_one_line(e)}") from None
    with open(path, "rb") as f:
        header = f.read(128)
    return _H5File(path, h5, matlab or header.startswith(b"MATLAB"), datasets)


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


def printable(text: str) -> str:
    """``text`` with control and other non-printable characters escaped (``\\n``, ``\\x00``):
    names read from damaged files must not break a one-line message."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:200] or type(e).__name__
