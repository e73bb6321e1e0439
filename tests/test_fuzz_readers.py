"""Readers that cannot be crashed: property-based fuzzing of ``load_scene`` on every format.

Malformed files are generated from tiny valid ones (8x8x4 LRMS, 32x32 PAN): truncated,
bit-flipped, overwritten, rebuilt with wrong dtypes / ranks / zero-size or mismatched
shapes / NaN and Inf, and with headers that declare huge dimensions. Every case must end
in an ``InputError`` with a one-line message, or in a valid Scene -- never in another
exception, a hang or a huge allocation. Hypothesis runs derandomized, so the suite is
deterministic; the examples' ``max_examples`` sum to well over 500 files.

While fuzzing, the readers' size limits are lowered through their environment variables
(4 MiB per array, 4096 per dimension) and, on Linux, the address space is capped a
couple of GiB above what the process already maps, so an allocation the guards missed
fails the test as a MemoryError instead of going unnoticed.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import itertools
import os
import signal
import struct
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import scipy.io as sio

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed: pip install pansharp_jax[test]")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pansharp_jax.data import io_mat  # noqa: E402
from pansharp_jax.data.io import load_scene  # noqa: E402
from pansharp_jax.data.scene import Scene  # noqa: E402
from pansharp_jax.errors import InputError  # noqa: E402

H, R, C = 8, 4, 4  # LRMS 8x8x4, PAN 32x32
SMALL_BYTES, SMALL_DIM = 2**22, 4096  # limits while fuzzing
HANG_SECONDS = 20


def _fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=n,
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ---------------------------------------------------------------- guards around every load
def _vm_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


@pytest.fixture(scope="module", autouse=True)
def _limits() -> Iterator[None]:
    """Small reader limits (env) and, where possible, an address-space cap for the module."""
    mp = pytest.MonkeyPatch()
    mp.setenv(io_mat.ENV_MAX_ARRAY_BYTES, str(SMALL_BYTES))
    mp.setenv(io_mat.ENV_MAX_ARRAY_DIM, str(SMALL_DIM))
    old = None
    try:
        import resource

        vm = _vm_bytes()
        if vm is not None and sys.platform.startswith("linux"):
            old = resource.getrlimit(resource.RLIMIT_AS)
            cap = vm + 3 * 2**30
            if old[1] == resource.RLIM_INFINITY or cap < old[1]:
                resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
            else:
                old = None
    except (ImportError, ValueError, OSError):
        old = None
    try:
        yield
    finally:
        if old is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, old)
        mp.undo()


@contextlib.contextmanager
def _no_hang(seconds: int = HANG_SECONDS) -> Iterator[None]:
    """Fail if the body runs too long: TimeoutError from SIGALRM for Python-level loops and,
    as a backstop for loops inside C libraries (which SIGALRM cannot interrupt), a
    traceback dump and exit of the test process after three times as long."""
    faulthandler.dump_traceback_later(3 * seconds, exit=True)
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
        return

    def _alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"reader still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        faulthandler.cancel_dump_traceback_later()


def _load_or_input_error(path: Path, **kw: Any) -> Scene | InputError:
    """Load; return the Scene (checked here, independently of Scene's own checks) or the InputError."""
    try:
        with _no_hang():
            scene = load_scene(path, **kw)
    except InputError as e:
        msg = str(e)
        assert msg.strip(), "empty InputError message"
        assert "\n" not in msg and "\r" not in msg, f"multi-line InputError: {msg!r}"
        return e
    assert isinstance(scene, Scene)
    lrms, pan = np.asarray(scene.lrms), np.asarray(scene.pan)
    assert lrms.ndim == 3 and pan.ndim == 3 and pan.shape[-1] == 1 and lrms.size > 0
    assert pan.shape[:2] == (lrms.shape[0] * scene.ratio, lrms.shape[1] * scene.ratio)
    for a in (lrms, pan) + ((np.asarray(scene.gt),) if scene.gt is not None else ()):
        assert a.dtype == np.float64 and np.isfinite(a).all()
        assert a.min() >= -1e-6 and a.max() <= 1 + 1e-6
    assert isinstance(scene.assumed, dict)
    return scene


_counter = itertools.count()


def _fresh(folder: Path, suffix: str) -> Path:
    return folder / f"f{next(_counter):05d}{suffix}"


# ---------------------------------------------------------------- tiny valid base files
def _base_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "lrms": rng.integers(1, 2047, (H, H, C)).astype(np.uint16),
        "pan": rng.integers(1, 2047, (R * H, R * H)).astype(np.uint16),
        "gt": rng.integers(1, 2047, (R * H, R * H, C)).astype(np.uint16),
    }


_MAT_CLASSES = {
    "float64": "double", "float32": "single", "uint8": "uint8", "int8": "int8", "uint16": "uint16",
    "int16": "int16", "uint32": "uint32", "int32": "int32", "uint64": "uint64", "int64": "int64", "bool": "logical",
}  # fmt: skip


def _write_mat73(path: Path, variables: dict[str, Any], *, huge: tuple[str, int, int] | None = None) -> None:
    """MATLAB v7.3 as MATLAB writes it (user block with the text header, reversed axes,
    ``MATLAB_class``). ``huge=(name, axis, size)`` stores that variable chunked and
    resizes one (MATLAB-order) axis to ``size`` without writing data."""
    with h5py.File(path, "w", userblock_size=512) as h5:
        for name, v in variables.items():
            if isinstance(v, str):
                d = h5.create_dataset(name, data=np.array([[ord(ch)] for ch in v], np.uint16))
                d.attrs["MATLAB_class"] = np.bytes_("char")
                continue
            a = np.asarray(v)
            a = a.reshape(1, 1) if a.ndim == 0 else a
            if huge is not None and huge[0] == name:
                d = h5.create_dataset(name, data=a.T, maxshape=(None,) * a.ndim, chunks=True)
                shape = list(d.shape)
                shape[a.ndim - 1 - huge[1]] = huge[2]
                d.resize(tuple(shape))
            else:
                d = h5.create_dataset(name, data=a.T)
            d.attrs["MATLAB_class"] = np.bytes_(_MAT_CLASSES.get(a.dtype.name, "double"))
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02IM")


def _write_h5(path: Path, variables: dict[str, Any], *, huge: tuple[str, int, int] | None = None) -> None:
    """PanCollection layout: N x C x H x W float data under gt/ms/lms/pan."""
    with h5py.File(path, "w") as h5:
        for name, v in variables.items():
            a = np.asarray(v)
            if huge is not None and huge[0] == name:
                d = h5.create_dataset(name, data=a, maxshape=(None,) * a.ndim, chunks=True)
                shape = list(d.shape)
                shape[huge[1]] = huge[2]
                d.resize(tuple(shape))
            else:
                h5.create_dataset(name, data=a)


def _write_h5_chunked(path: Path, variables: dict[str, Any]) -> None:
    """PanCollection layout, chunked per sample with gzip, plus string metadata in the heap."""
    with h5py.File(path, "w") as h5:
        for name, v in variables.items():
            h5.create_dataset(name, data=v, chunks=(1,) + v.shape[1:], compression="gzip", shuffle=True)
        h5["sensor"] = "none"  # variable-length string
        h5["ratio"] = 4


def _pancollection(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    def nchw(a: np.ndarray) -> np.ndarray:
        a = a[..., None] if a.ndim == 2 else a
        return np.stack([np.moveaxis(a, -1, 0)] * 2).astype(np.float32) / np.float32(2047)

    return {"gt": nchw(x["gt"]), "ms": nchw(x["lrms"]), "pan": nchw(x["pan"])}


def _npz_bytes(arrays: dict[str, Any], compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _mat5_bytes(variables: dict[str, Any], compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    sio.savemat(buf, variables, do_compression=compressed)
    return buf.getvalue()


def _file_bytes(write: Callable[[Path], None], folder: Path, suffix: str) -> bytes:
    p = _fresh(folder, suffix)
    write(p)
    data = p.read_bytes()
    p.unlink()
    return data


_GEO_MS = {"crs": "EPSG:32633", "transform": (500000.0, 2.0, 0.0, 5000000.0, 0.0, -2.0)}
_GEO_PAN = {"crs": "EPSG:32633", "transform": (500000.0, 0.5, 0.0, 5000000.0, 0.0, -0.5)}


def _tif_bytes(folder: Path, a: np.ndarray, georef: dict[str, Any] | None) -> bytes:
    from pansharp_jax.data.io_geotiff import write_geotiff

    return _file_bytes(lambda p: write_geotiff(p, a, georef), folder, ".tif")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def bases(work: Path) -> dict[str, list[bytes]]:
    """Valid base files per format, as bytes (each one loads as a valid Scene)."""
    x = _base_arrays()
    toolbox = {"I_MS_LR": x["lrms"], "I_PAN": x["pan"], "I_GT": x["gt"], "sensor": "none"}
    out = {
        "mat5": [_mat5_bytes(toolbox), _mat5_bytes({k.lower(): v for k, v in x.items()}, compressed=True)],
        "mat73": [_file_bytes(lambda p: _write_mat73(p, toolbox), work, ".mat")],
        "h5": [
            _file_bytes(lambda p: _write_h5(p, _pancollection(x)), work, ".h5"),
            _file_bytes(lambda p: _write_h5_chunked(p, _pancollection(x)), work, ".h5"),
        ],
        "npz": [_npz_bytes(x), _npz_bytes(x, compressed=True)],
    }
    suffix = {"mat5": ".mat", "mat73": ".mat", "h5": ".h5", "npz": ".npz"}
    for fmt, blobs in out.items():  # the bases themselves are valid
        for blob in blobs:
            p = _fresh(work, suffix[fmt])
            p.write_bytes(blob)
            assert isinstance(_load_or_input_error(p), Scene), fmt
    return out


@pytest.fixture(scope="module")
def tif_pair(work: Path) -> tuple[bytes, bytes]:
    pytest.importorskip("rasterio", reason="GeoTIFF fuzzing needs rasterio: pip install pansharp_jax[geo]")
    x = _base_arrays()
    ms, pan = _tif_bytes(work, x["lrms"], _GEO_MS), _tif_bytes(work, x["pan"], _GEO_PAN)
    m, p = _fresh(work, ".tif"), _fresh(work, ".tif")
    m.write_bytes(ms)
    p.write_bytes(pan)
    assert isinstance(_load_or_input_error(m, pan_path=p), Scene)
    return ms, pan


# ---------------------------------------------------------------- byte-level damage
_damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0.0, 0.999), st.integers(0, 7)), min_size=1, max_size=8)),
    st.tuples(st.just("overwrite"), st.floats(0.0, 0.999), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("zero"), st.floats(0.0, 0.999), st.integers(1, 64)),
)


def _damaged(data: bytes, op: tuple[Any, ...]) -> bytes:
    n = len(data)
    if op[0] == "truncate":
        return data[: int(op[1] * n)]
    b = bytearray(data)
    if op[0] == "flip":
        for frac, bit in op[1]:
            b[int(frac * n)] ^= 1 << bit
    elif op[0] == "overwrite":
        i = int(op[1] * n)
        b[i : i + len(op[2])] = op[2]
        del b[n:]
    else:
        i = int(op[1] * n)
        b[i : i + op[2]] = bytes(len(b[i : i + op[2]]))
    return bytes(b)


def _fuzz_bytes(bases: dict[str, list[bytes]], work: Path, fmt: str, which: int, op: tuple[Any, ...]) -> None:
    blobs = bases[fmt]
    p = _fresh(work, {"mat5": ".mat", "mat73": ".mat", "h5": ".h5", "npz": ".npz"}[fmt])
    p.write_bytes(_damaged(blobs[which % len(blobs)], op))
    try:
        _load_or_input_error(p)
    finally:
        p.unlink()


@_fuzz_settings(80)
@given(which=st.integers(0, 1), op=_damage)
def test_fuzz_mat5_bytes(bases, work, which, op):
    _fuzz_bytes(bases, work, "mat5", which, op)


@_fuzz_settings(70)
@given(op=_damage)
def test_fuzz_mat73_bytes(bases, work, op):
    _fuzz_bytes(bases, work, "mat73", 0, op)


@_fuzz_settings(70)
@given(which=st.integers(0, 1), op=_damage)
def test_fuzz_pancollection_h5_bytes(bases, work, which, op):
    _fuzz_bytes(bases, work, "h5", which, op)


@_fuzz_settings(80)
@given(which=st.integers(0, 1), op=_damage)
def test_fuzz_npz_bytes(bases, work, which, op):
    _fuzz_bytes(bases, work, "npz", which, op)


@_fuzz_settings(60)
@given(target=st.sampled_from(["ms", "pan", "both"]), op=_damage, op2=_damage)
def test_fuzz_geotiff_pair_bytes(tif_pair, work, target, op, op2):
    ms, pan = tif_pair
    m, p = _fresh(work, ".tif"), _fresh(work, ".tif")
    m.write_bytes(_damaged(ms, op) if target in ("ms", "both") else ms)
    p.write_bytes(_damaged(pan, op2 if target == "both" else op) if target in ("pan", "both") else pan)
    try:
        _load_or_input_error(m, pan_path=p)
    finally:
        m.unlink()
        p.unlink()


# ---------------------------------------------------------------- content-level damage
_DTYPES = [
    "complex64", "complex128", "bool", "object", "str", "bytes", "int8", "uint8", "int16", "uint16", "int32",
    "uint32", "int64", "uint64", "float16", "float32", "float64",
]  # fmt: skip


@st.composite
def _bad_array(draw: Any, spatial: tuple[int, int], bands: int) -> np.ndarray:
    """An array meant for one role, possibly with the wrong dtype, rank, size or values."""
    rank_kind = draw(st.sampled_from(["ok", "ok", "ok", "0d", "1d", "4d", "5d", "zero", "mismatch"]))
    h, w = spatial
    if rank_kind == "ok":
        shape: tuple[int, ...] = (h, w) if bands == 1 else (h, w, bands)
    elif rank_kind == "0d":
        shape = ()
    elif rank_kind == "1d":
        shape = (h * w,)
    elif rank_kind == "4d":
        shape = (h, w, bands, draw(st.integers(1, 2)))
    elif rank_kind == "5d":
        shape = (1, h, w, bands, 1)
    elif rank_kind == "zero":
        shape = tuple(draw(st.permutations([0, h, max(bands, 1)])))
    else:
        shape = (h + draw(st.integers(-3, 5)), w + draw(st.integers(-3, 5)), bands + draw(st.integers(0, 2)))
        shape = tuple(max(d, 1) for d in shape)
    dtype = draw(st.sampled_from(_DTYPES))
    values = draw(st.sampled_from(["dn", "unit", "nan", "inf", "negative", "huge"]))
    base = np.random.default_rng(draw(st.integers(0, 3))).uniform(0.05, 0.95, shape)
    if values == "dn":
        base = np.rint(base * 2047)
    elif values == "nan" and base.size:
        base.flat[draw(st.integers(0, base.size - 1))] = np.nan
    elif values == "inf" and base.size:
        base.flat[draw(st.integers(0, base.size - 1))] = -np.inf if draw(st.booleans()) else np.inf
    elif values == "negative":
        base = base * 4000 - 1000
    elif values == "huge":
        base = base * 1e30
    with np.errstate(invalid="ignore", over="ignore"):
        if dtype == "object":
            return np.array(base.tolist() if base.ndim else base.item(), dtype=object)
        if dtype == "str":
            return np.array(base.astype(str))
        if dtype == "bytes":
            return np.array(base.astype("S8"))
        if dtype.startswith("complex"):
            return (base + 1j * base).astype(dtype)
        if dtype == "bool":
            return base > 0.5
        if dtype[0] in "iu":
            info = np.iinfo(dtype)
            return np.nan_to_num(base, nan=0, posinf=info.max, neginf=info.min).clip(info.min, info.max).astype(dtype)
        return base.astype(dtype)


@st.composite
def _scene_arrays(draw: Any) -> dict[str, np.ndarray]:
    """lrms/pan/gt with one or more of them damaged (and some left valid)."""
    out = {
        "lrms": draw(_bad_array((H, H), C)),
        "pan": draw(_bad_array((R * H, R * H), 1)),
    }
    if draw(st.booleans()):
        out["gt"] = draw(_bad_array((R * H, R * H), C))
    return out


def _write_container(fmt: str, path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    if fmt == "npz":
        np.savez(path, **arrays, **meta)
        return
    if fmt in ("mat5", "mat73"):
        names = {"lrms": "I_MS_LR", "pan": "I_PAN", "gt": "I_GT"}
        variables = {names[k]: v for k, v in arrays.items()} | meta
        sio.savemat(path, variables) if fmt == "mat5" else _write_mat73(path, variables)
        return
    names = {"lrms": "ms", "pan": "pan", "gt": "gt"}  # PanCollection h5: stored channels first
    _write_h5(path, {names[k]: np.moveaxis(v, -1, 0) if v.ndim == 3 else v for k, v in arrays.items()} | meta)


_meta = st.dictionaries(
    st.sampled_from(["sensor", "ratio", "L", "bits"]),
    st.one_of(
        st.sampled_from(["WV3", "none", "nonsense", "", "GF2"]),
        st.sampled_from([0, 1, 4, -3, 11, 40, 2.5, float("nan"), float("inf"), 2**40]),
    ),
    max_size=3,
)


@_fuzz_settings(170)
@given(fmt=st.sampled_from(["npz", "mat5", "mat73", "h5"]), arrays=_scene_arrays(), meta=_meta, explicit=st.booleans())
def test_fuzz_container_contents(work, fmt, arrays, meta, explicit):
    p = _fresh(work, ".npz" if fmt == "npz" else ".h5" if fmt == "h5" else ".mat")
    if fmt in ("mat73", "h5"):
        meta = {k: (np.float64(v) if isinstance(v, (int, float)) and abs(v) < 2**53 else v) for k, v in meta.items()}
    try:
        _write_container(fmt, p, arrays, meta)
    except Exception:  # the writer itself refuses this content (e.g. object arrays in HDF5)
        p.unlink(missing_ok=True)
        hypothesis.assume(False)
    keys = None
    if explicit:
        keys = {"npz": {"lrms": "lrms", "pan": "pan"}, "h5": {"lrms": "ms", "pan": "pan"}}.get(
            fmt, {"lrms": "I_MS_LR", "pan": "I_PAN"}
        )
    try:
        _load_or_input_error(p, keys=keys)
    finally:
        p.unlink(missing_ok=True)


_TIF_DTYPES = [
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64", "complex64", "int64", "uint64",
]  # fmt: skip


def _as_dtype(a: np.ndarray, dtype: str) -> np.ndarray:
    """Cast, saturating integers (NaN -> 0) as a writer of that type would store them."""
    if dtype[0] in "fc":
        return a.astype(dtype)
    info = np.iinfo(dtype)
    return np.nan_to_num(a).clip(info.min, info.max).astype(dtype)


@_fuzz_settings(50)
@given(
    ms_dtype=st.sampled_from(_TIF_DTYPES),
    pan_dtype=st.sampled_from(_TIF_DTYPES),
    ms_bands=st.sampled_from([1, 4, 8]),
    pan_bands=st.sampled_from([1, 1, 3]),
    pan_size=st.sampled_from([32, 32, 31, 16, 40]),
    values=st.sampled_from(["dn", "nan", "negative", "huge"]),
    shift=st.sampled_from([(0.0, 0.0), (0.0, 0.0), (1.0, -1.0), (3.0, 0.0), (10000.0, 0.0), (0.0, -10000.0)]),
    pan_crs=st.sampled_from(["EPSG:32633", "EPSG:32633", "EPSG:4326", None]),
)
def test_fuzz_geotiff_pair_contents(
    tif_pair, work, ms_dtype, pan_dtype, ms_bands, pan_bands, pan_size, values, shift, pan_crs
):
    from pansharp_jax.data.io_geotiff import write_geotiff

    rng = np.random.default_rng(3)
    ms = rng.uniform(1, 2047, (H, H, ms_bands))
    pan = rng.uniform(1, 2047, (pan_size, pan_size, pan_bands))
    if values == "nan":
        pan[1, 1, 0] = np.nan
    elif values == "negative":
        ms -= 1500
    elif values == "huge":
        pan *= 1e30
    with np.errstate(invalid="ignore", over="ignore"):
        ms_a, pan_a = _as_dtype(ms, ms_dtype), _as_dtype(pan, pan_dtype)
    t = _GEO_PAN["transform"]
    pan_geo = {"crs": pan_crs, "transform": (t[0] + shift[0], t[1], t[2], t[3] + shift[1], t[4], t[5])}
    m, p = _fresh(work, ".tif"), _fresh(work, ".tif")
    try:
        try:
            write_geotiff(m, ms_a, _GEO_MS)
            write_geotiff(p, pan_a, pan_geo)
        except Exception:  # GDAL cannot store this pixel type
            hypothesis.assume(False)
        _load_or_input_error(m, pan_path=p)
    finally:
        m.unlink(missing_ok=True)
        p.unlink(missing_ok=True)


# ---------------------------------------------------------------- headers declaring huge dimensions
_HUGE = st.sampled_from([SMALL_DIM + 1, 2**20 + 1, 2**31 - 1, 2**40, 2**62])


def _npy_with_shape(a: np.ndarray, shape: tuple[int, ...]) -> bytes:
    """A .npy file whose header declares ``shape`` but whose data is ``a``'s (too short)."""
    buf = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(a)
    header["shape"] = shape
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(np.ascontiguousarray(a).tobytes())
    return buf.getvalue()


def _huge_npz(path: Path, role: str, axis: int, size: int) -> None:
    x = _base_arrays()
    with zipfile.ZipFile(path, "w") as zf:
        for k, a in x.items():
            shape = list(a.shape)
            if k == role:
                shape[axis % a.ndim] = size
            zf.writestr(f"{k}.npy", _npy_with_shape(a, tuple(shape)))


def _mat5_dims_offsets(data: bytes) -> list[list[int]]:
    """Byte offsets of each top-level (uncompressed) variable's int32 dimension values."""
    out, pos = [], 128
    while pos + 8 <= len(data):
        mtype, nbytes = struct.unpack_from("<II", data, pos)
        if mtype == 14:  # miMATRIX: flags sub-element (16 bytes), then the dimensions
            dpos = pos + 8 + 16
            dtype, dbytes = struct.unpack_from("<II", data, dpos)
            assert dtype == 5  # miINT32
            out.append([dpos + 8 + 4 * i for i in range(dbytes // 4)])
        pos += 8 + nbytes + (-nbytes % 8)
    return out


def _huge_mat5(path: Path, role: str, axis: int, size: int) -> None:
    x = _base_arrays()
    names = {"lrms": "I_MS_LR", "pan": "I_PAN", "gt": "I_GT"}
    data = bytearray(_mat5_bytes({names[k]: v for k, v in x.items()}))
    offsets = _mat5_dims_offsets(bytes(data))
    assert len(offsets) == 3
    dims = offsets[list(names).index(role)]
    struct.pack_into("<i", data, dims[axis % len(dims)], min(size, 2**31 - 1))  # int32 on disk
    path.write_bytes(bytes(data))


def _tiff_patch_size(data: bytes, width: int | None, height: int | None) -> bytes:
    """Rewrite ImageWidth / ImageLength of the first IFD of a little-endian classic TIFF."""
    assert data[:4] == b"II*\x00"
    b = bytearray(data)
    (ifd,) = struct.unpack_from("<I", b, 4)
    (n,) = struct.unpack_from("<H", b, ifd)
    for i in range(n):
        e = ifd + 2 + 12 * i
        tag = struct.unpack_from("<H", b, e)[0]
        value = width if tag == 256 else height if tag == 257 else None
        if value is not None:
            struct.pack_into("<HHII", b, e, tag, 4, 1, min(value, 2**32 - 1))  # LONG
    return bytes(b)


@_fuzz_settings(60)
@given(
    fmt=st.sampled_from(["npz", "mat5", "mat73", "h5", "tif"]),
    role=st.sampled_from(["lrms", "pan", "gt"]),
    axis=st.integers(0, 2),
    size=_HUGE,
)
def test_fuzz_huge_declared_dimensions(work, fmt, role, axis, size):
    """Headers declaring enormous arrays are refused before anything is allocated."""
    x = _base_arrays()
    if fmt == "tif":
        pytest.importorskip("rasterio")
        ms, pan = _tif_bytes(work, x["lrms"], _GEO_MS), _tif_bytes(work, x["pan"], _GEO_PAN)
        if role == "pan":
            pan = _tiff_patch_size(pan, size if axis == 1 else None, size if axis != 1 else None)
        else:
            ms = _tiff_patch_size(ms, size if axis == 1 else None, size if axis != 1 else None)
        m, p = _fresh(work, ".tif"), _fresh(work, ".tif")
        m.write_bytes(ms)
        p.write_bytes(pan)
        try:
            result = _load_or_input_error(m, pan_path=p)
        finally:
            m.unlink()
            p.unlink()
        assert isinstance(result, InputError)
        return
    p = _fresh(work, ".npz" if fmt == "npz" else ".h5" if fmt == "h5" else ".mat")
    if fmt == "npz":
        _huge_npz(p, role, axis, size)
    elif fmt == "mat5":
        _huge_mat5(p, role, axis, size)
    elif fmt == "mat73":
        names = {"lrms": "I_MS_LR", "pan": "I_PAN", "gt": "I_GT"}
        a = x[role]
        _write_mat73(p, {names[k]: v for k, v in x.items()}, huge=(names[role], axis % a.ndim, size))
    else:
        pc = _pancollection(x)
        key = {"lrms": "ms", "pan": "pan", "gt": "gt"}[role]
        _write_h5(p, pc, huge=(key, axis + 1, size))
    try:
        result = _load_or_input_error(p)
    finally:
        p.unlink()
    assert isinstance(result, InputError), f"{fmt} {role} axis {axis} = {size} was accepted"


def test_huge_headers_refused_under_default_limits(work, monkeypatch):
    """With the shipped limits (no env override) 2**40-element headers fail fast and say why."""
    monkeypatch.delenv(io_mat.ENV_MAX_ARRAY_BYTES)
    monkeypatch.delenv(io_mat.ENV_MAX_ARRAY_DIM)
    assert io_mat.array_limits() == (2**34, 2**20)
    p = work / "huge_default.npz"
    _huge_npz(p, "pan", 0, 2**40)
    msg = r"'pan' in huge_default\.npz declares shape 1099511627776x32: a dimension above the limit 1048576"
    with pytest.raises(InputError, match=msg):
        load_scene(p)
    # every dimension below the limit, the total above it: 2**19 x 2**19 uint16 = 2**39 bytes
    q = work / "huge_default2.npz"
    with zipfile.ZipFile(q, "w") as zf:
        x = _base_arrays()
        zf.writestr("lrms.npy", _npy_with_shape(x["lrms"], x["lrms"].shape))
        zf.writestr("pan.npy", _npy_with_shape(x["pan"], (2**19, 2**19)))
    msg = r"declares shape 524288x524288 \(549755813888 bytes\), above the limit of 17179869184 bytes"
    with pytest.raises(InputError, match=msg):
        load_scene(q)
    p.unlink()
    q.unlink()


def test_limits_env_override_and_bad_values(monkeypatch):
    monkeypatch.setenv(io_mat.ENV_MAX_ARRAY_BYTES, "1000")
    monkeypatch.setenv(io_mat.ENV_MAX_ARRAY_DIM, "0x40")
    assert io_mat.array_limits() == (1000, 64)
    io_mat.check_declared_size("a", (10, 10), 8)  # 800 bytes: fine
    with pytest.raises(InputError, match=r"a declares shape 10x13 \(1040 bytes\), above the limit of 1000 bytes"):
        io_mat.check_declared_size("a", (10, 13), 8)
    with pytest.raises(InputError, match="a declares shape 65x1: a dimension above the limit 64"):
        io_mat.check_declared_size("a", (65, 1), 1)
    with pytest.raises(InputError, match="a declares an invalid shape -1x4"):
        io_mat.check_declared_size("a", (-1, 4), 1)
    monkeypatch.setenv(io_mat.ENV_MAX_ARRAY_DIM, "lots")
    with pytest.raises(InputError, match="PANSHARP_MAX_ARRAY_DIM must be a positive integer, got 'lots'"):
        io_mat.array_limits()


def test_small_env_limit_refuses_a_valid_file(work, monkeypatch):
    """The limit is what the reader enforces: a valid 32x32 uint16 PAN (2048 bytes) is refused at 1 KiB."""
    p = work / "valid.npz"
    p.write_bytes(_npz_bytes(_base_arrays()))
    assert isinstance(load_scene(p), Scene)
    monkeypatch.setenv(io_mat.ENV_MAX_ARRAY_BYTES, "1024")
    with pytest.raises(InputError, match=r"'pan' in valid\.npz declares shape 32x32 \(2048 bytes\)"):
        load_scene(p)
    p.unlink()


# ---------------------------------------------------------------- regressions: files that crashed the interpreter
def test_mat5_zeroed_element_type_is_refused_not_a_segfault(work):
    """scipy's compiled reader segfaulted on a data element whose type code was zeroed."""
    x = _base_arrays()
    data = bytearray(_mat5_bytes({"I_MS_LR": x["lrms"], "I_PAN": x["pan"], "I_GT": x["gt"]}))
    gt_dims = _mat5_dims_offsets(bytes(data))[2]
    dims_bytes = 4 * len(gt_dims)
    name_tag = gt_dims[0] + dims_bytes + (-dims_bytes % 8)  # the name element follows the padded dimensions
    (word,) = struct.unpack_from("<I", data, name_tag)
    name_len = word >> 16 or struct.unpack_from("<I", data, name_tag + 4)[0]
    real_tag = name_tag + (8 if word >> 16 else 8 + name_len + (-name_len % 8))
    assert struct.unpack_from("<II", data, real_tag) == (4, x["gt"].nbytes)  # miUINT16, the GT's bytes
    struct.pack_into("<I", data, real_tag, 0)
    p = work / "zeroed_type.mat"
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"corrupt or truncated MATLAB v5 file .*zeroed_type\.mat: element of type 0"):
        load_scene(p)
    p.unlink()


def test_hdf5_damaged_chunk_index_is_refused_not_a_segfault(work):
    """libhdf5 segfaulted reading a gzip-chunked dataset whose index pointed a chunk at address 0."""
    p = work / "chunks.h5"
    with h5py.File(p, "w") as f:
        for k, v in _pancollection(_base_arrays()).items():
            f.create_dataset(k, data=v, chunks=(1,) + v.shape[1:], compression="gzip")
    with h5py.File(p, "r") as f:
        address = f["gt"].id.get_chunk_info(1).byte_offset
    data = bytearray(p.read_bytes())
    packed = struct.pack("<Q", address)
    assert data.count(packed) == 1  # the chunk index entry
    i = data.index(packed)
    data[i : i + 8] = bytes(8)
    p.write_bytes(bytes(data))
    msg = r"variable 'gt' in chunks\.h5: damaged chunk index \(chunk 1 at \(1, 0, 0, 0\)"
    with pytest.raises(InputError, match=msg):
        load_scene(p)
    p.unlink()


def test_valid_chunked_compressed_hdf5_still_loads(work):
    """The storage checks accept what MATLAB and h5py write: chunks, gzip, a 512-byte user block."""
    x = _base_arrays()
    p = work / "chunked.h5"
    with h5py.File(p, "w") as f:
        for k, v in _pancollection(x).items():
            f.create_dataset(k, data=v, chunks=(1, 1) + v.shape[2:], compression="gzip", shuffle=True)
    scene = load_scene(p, index=1)
    np.testing.assert_allclose(scene.lrms, x["lrms"] / 2047.0, rtol=1e-6)
    np.testing.assert_allclose(scene.pan[..., 0], x["pan"] / 2047.0, rtol=1e-6)
    q = work / "chunked73.mat"
    _write_mat73(q, {"I_MS_LR": x["lrms"], "I_PAN": x["pan"], "sensor": "IKONOS"}, huge=("I_PAN", 0, R * H))
    scene = load_scene(q)  # I_PAN chunked (resized to its own size), the rest contiguous
    np.testing.assert_array_equal(scene.pan[..., 0], x["pan"] / 2047.0)
    assert scene.sensor.name == "IKONOS"  # the char variable is read too
    p.unlink()
    q.unlink()


def test_hdf5_damaged_string_heap_does_not_hang(work):
    """libhdf5 looped forever reading a variable-length string whose heap object size was zeroed.

    Run in a child process with a timeout: a loop inside the C library cannot be interrupted
    from Python, so a regression must fail this test, not hang the suite."""
    x = _base_arrays()
    p = work / "qb_heap.h5"
    _write_h5(p, _pancollection(x))
    with h5py.File(p, "a") as f:
        f["sensor"] = "IKONOS"  # a variable-length string: stored in the global heap
    data = bytearray(p.read_bytes())
    at = data.index(b"IKONOS") - 8  # the heap object's 8-byte size field
    assert struct.unpack_from("<Q", data, at)[0] == 6
    struct.pack_into("<Q", data, at, 0)
    p.write_bytes(bytes(data))
    code = (
        "import sys; from pansharp_jax.data.io import load_scene; "
        "s = load_scene(sys.argv[1]); print(s.sensor.name, s.assumed.get('sensor', ''))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # the damaged metadata is ignored; the sensor comes from the file name instead, and says so
    assert out.stdout.strip() == "QB QB (guessed from the file name qb_heap.h5)"
    p.unlink()


def test_mat5_complex_flag_without_imaginary_part_is_refused(work):
    """scipy read past the array (into the next variable's tag) and segfaulted."""
    x = _base_arrays()
    data = bytearray(_mat5_bytes({"I_MS_LR": x["lrms"], "I_PAN": x["pan"]}))
    flags_at = 128 + 8 + 8  # first variable: element tag, flags sub-element tag, then the flags
    (flags,) = struct.unpack_from("<I", data, flags_at)
    assert flags & 0xFF == 11  # mxUINT16_CLASS, as scipy writes uint16
    struct.pack_into("<I", data, flags_at, flags | 0x800)  # the complex bit
    p = work / "complex_flag.mat"
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"complex_flag\.mat: array at byte 136 lacks its imaginary part"):
        load_scene(p)
    p.unlink()


def test_control_characters_in_variable_names_stay_on_one_line(work):
    """A bit flip turned a variable name into 'testmatr}\\n': the message must stay one line."""
    p = work / "names.npz"
    x = _base_arrays()
    np.savez(p, **{"bad\nname": x["lrms"], "pan\x1b[2J": x["pan"]})
    with pytest.raises(InputError) as e:
        load_scene(p)
    msg = str(e.value)
    assert "\n" not in msg and "\x1b" not in msg
    assert "keys found: bad\\nname 8x8x4, pan\\x1b[2J 32x32" in msg
    p.unlink()
