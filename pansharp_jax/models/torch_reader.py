"""Read PyTorch checkpoints (``.pth``, ``.pt``, ``.pth.tar``) into NumPy, without PyTorch.

Two container formats exist, and both are read:

* zip (``torch.save`` default since PyTorch 1.6; every released file we use): entries
  ``<prefix>/data.pkl`` (the pickled object tree, in which each tensor is a call of
  ``torch._utils._rebuild_tensor_v2`` on a persistent id ``('storage', <dtype>Storage,
  key, location, numel)``), ``<prefix>/data/<key>`` (the raw storage bytes, little-endian
  unless ``<prefix>/byteorder`` says ``big``) and ``<prefix>/version``.
* legacy (PyTorch < 1.6, or ``_use_new_zipfile_serialization=False``): consecutive pickles
  (the magic number ``0x1950a86a20f9469cfc6c``, the protocol version 1001, a system-info
  dict, the object tree with persistent ids ``('storage', type, key, location, numel,
  view)``, the list of storage keys), then for each key an int64 little-endian element
  count followed by the raw bytes.

The unpickler is restricted: only a fixed set of globals resolves to real, harmless
callables (``collections.OrderedDict``; the tensor and parameter rebuild functions, mapped
to NumPy; storage types; NumPy dtype/scalar/array reconstruction; ``_codecs.encode``).
Every other global (e.g. the ``torch.nn`` module classes of a pickled whole model) becomes
an inert :class:`Opaque` placeholder that records its arguments and state and runs no
code, so loading a file never executes anything from it.

Errors: a missing, corrupt, truncated or unrecognised file raises
:class:`pansharp_jax.errors.InputError` with a one-line message naming the file.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pansharp_jax.errors import InputError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch.<Name>Storage -> NumPy dtype of one element (little-endian on disk)
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",  # converted to float32 on read
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "UntypedStorage": "u1",
}
_TORCH_DTYPE_NAMES = {
    "float32", "float", "float64", "double", "float16", "half", "bfloat16", "int64", "long",
    "int32", "int", "int16", "short", "int8", "uint8", "bool",
}  # fmt: skip

# keys under which training scripts commonly nest the state dict
STATE_DICT_KEYS = ("state_dict", "model_state", "model_state_dict", "model", "net", "network", "params", "weights")


class Opaque:
    """Inert stand-in for any class or function a checkpoint names outside the allow-list.

    Records constructor arguments (``_args``, ``_kwargs``) and pickled state (in
    ``__dict__`` when it is a dict, else ``_state``). ``_qualname`` is the original
    ``module.name``.
    """

    _qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args
        self._kwargs = kwargs

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state, slots = state  # (dict state, slot state) as pickle writes it
            self.__dict__.update(slots or {})
        if isinstance(state, dict):
            self.__dict__.update(state)
        elif state is not None:
            self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<Opaque {self._qualname}>"


_OPAQUE_CLASSES: dict[tuple[str, str], type] = {}


def _opaque_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _OPAQUE_CLASSES:
        _OPAQUE_CLASSES[key] = type(name, (Opaque,), {"_qualname": f"{module}.{name}", "__module__": __name__})
    return _OPAQUE_CLASSES[key]


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    def __init__(self, key: str, stype: _StorageType, numel: int) -> None:
        self.key, self.stype, self.numel = key, stype, numel


class _StorageRef:
    """A storage, or (legacy files) a view of one starting at ``offset`` elements."""

    def __init__(self, storage: _Storage, offset: int = 0) -> None:
        self.storage, self.offset = storage, offset


class _LazyTensor:
    """A tensor whose bytes are read after unpickling (legacy files store them after the pickle)."""

    def __init__(self, ref: Any, offset: int, size: Any, stride: Any) -> None:
        if not isinstance(ref, _StorageRef):
            raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
        self.ref = ref
        self.offset = int(offset) + ref.offset
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    @property
    def signature(self) -> tuple[Any, ...]:
        return (self.ref.storage.key, self.offset, self.size, self.stride)


def _rebuild_tensor_v2(storage: Any, storage_offset: int, size: Any, stride: Any, *_: Any, **__: Any) -> _LazyTensor:
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any) -> _LazyTensor:
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise pickle.UnpicklingError("object NumPy scalars are not allowed")
    if isinstance(data, str):
        data = data.encode("latin1")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"NumPy array subtype {subtype!r} is not allowed")
    if isinstance(dtype, bytes):
        dtype = dtype.decode("latin1")
    return np.ndarray.__new__(np.ndarray, shape, np.dtype(dtype))


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    if isinstance(cls, type) and issubclass(cls, Opaque):
        obj = cls.__new__(cls)
        obj.__dict__["_base_state"] = state
        return obj
    raise pickle.UnpicklingError(f"copyreg reconstruction of {cls!r} is not allowed")


def _torch_device(*args: Any) -> str:
    return ":".join(str(a) for a in args)


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("torch", "device"): _torch_device,
    ("_codecs", "encode"): codecs.encode,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "object"): _opaque_class("builtins", "object"),
}


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)  # protocol-2 pickles name Python 2 modules
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPE_NAMES:
            return f"torch.{name}"
        return _opaque_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {str(pid)[:60]!r}")
        stype, key, _location, numel = pid[1:5]
        if not isinstance(stype, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {stype!r}")
        key = str(key)
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, stype, int(numel))
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy storage view: (view_key, offset, view_size)
            return _StorageRef(storage, int(view[1]))
        return _StorageRef(storage)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _Checkpoint:
    """An unpickled checkpoint: the object tree with NumPy arrays, and each array's storage signature."""

    def __init__(self, obj: Any, signatures: dict[int, tuple[Any, ...]]) -> None:
        self.obj = obj
        self.signatures = signatures


def _array_from_bytes(storage: _Storage, raw: bytes, big_endian: bool, name: str) -> np.ndarray:
    dtype = storage.stype.dtype.newbyteorder(">") if big_endian and storage.stype.dtype.itemsize > 1 else storage.stype.dtype
    need = storage.numel * dtype.itemsize
    if len(raw) < need:
        raise InputError(f"{name}: storage {storage.key} is truncated ({len(raw)} of {need} bytes)")
    flat = np.frombuffer(raw, dtype=dtype, count=storage.numel)
    if storage.stype.name == "BFloat16Storage":
        flat = (flat.astype(np.uint32) << 16).view(np.float32)
    return flat


def _materialize(obj: Any, flats: dict[str, np.ndarray], name: str) -> _Checkpoint:
    signatures: dict[int, tuple[Any, ...]] = {}
    done: dict[int, Any] = {}

    def tensor(t: _LazyTensor) -> np.ndarray:
        flat = flats[t.ref.storage.key]
        if any(s < 0 for s in t.size) or any(s < 0 for s in t.stride) or t.offset < 0:
            raise InputError(f"{name}: tensor with negative size/stride/offset")
        if 0 in t.size:
            arr = np.zeros(t.size, flat.dtype.newbyteorder("="))
        else:
            last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
            if last >= flat.size:
                raise InputError(f"{name}: tensor reaches element {last} of a {flat.size}-element storage {t.ref.storage.key}")
            view = np.lib.stride_tricks.as_strided(
                flat[t.offset :], shape=t.size, strides=tuple(s * flat.itemsize for s in t.stride), writeable=False
            )
            arr = np.array(view, dtype=flat.dtype.newbyteorder("="), copy=True)
        signatures[id(arr)] = t.signature
        return arr

    def walk(x: Any) -> Any:
        # memo by id; each entry keeps the original object alive so that no id is reused
        if id(x) in done:
            return done[id(x)][1]
        if isinstance(x, _LazyTensor):
            done[id(x)] = (x, tensor(x))
        elif isinstance(x, dict):
            done[id(x)] = (x, x)
            for k in list(x):
                x[k] = walk(x[k])
        elif isinstance(x, list):
            done[id(x)] = (x, x)
            x[:] = [walk(v) for v in x]
        elif isinstance(x, tuple):
            done[id(x)] = (x, tuple(walk(v) for v in x))
        elif isinstance(x, Opaque):
            done[id(x)] = (x, x)
            for k, v in list(vars(x).items()):
                x.__dict__[k] = walk(v)
        else:
            return x
        return done[id(x)][1]

    return _Checkpoint(walk(obj), signatures)


def _read_zip(path: Path, name: str) -> _Checkpoint:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise InputError(f"{name}: a zip file but not a PyTorch checkpoint (no single <prefix>/data.pkl)")
        prefix = pkls[0][: -len("data.pkl")]
        big = False
        if f"{prefix}byteorder" in names:
            big = zf.read(f"{prefix}byteorder").decode("ascii", "replace").strip() == "big"
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(io.BytesIO(zf.read(pkls[0])), storages).load()
        flats = {}
        for key, st in storages.items():
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise InputError(f"{name}: storage record {key} is missing")
            flats[key] = _array_from_bytes(st, zf.read(entry), big, name)
    return _materialize(obj, flats, name)


def _read_legacy(f: BinaryIO, name: str) -> _Checkpoint:
    storages: dict[str, _Storage] = {}

    def plain() -> Any:
        return _Unpickler(f, storages).load()

    if plain() != _LEGACY_MAGIC:
        raise InputError(f"{name}: a pickle file but not a PyTorch checkpoint (wrong magic number)")
    version = plain()
    if version != _LEGACY_PROTOCOL:
        raise InputError(f"{name}: unsupported legacy PyTorch protocol version {version!r}")
    sys_info = plain()
    big = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    obj = plain()
    keys = plain()
    if not isinstance(keys, list):
        raise InputError(f"{name}: corrupt legacy checkpoint (storage key list missing)")
    flats = {}
    for key in keys:
        key = str(key)
        if key not in storages:
            raise InputError(f"{name}: storage {key} is listed but never used")
        st = storages[key]
        head = f.read(8)
        if len(head) < 8:
            raise InputError(f"{name}: truncated before storage {key}")
        numel = struct.unpack("<q", head)[0]
        if numel < 0:
            raise InputError(f"{name}: corrupt legacy checkpoint (negative size of storage {key})")
        st.numel = numel
        raw = f.read(numel * st.stype.dtype.itemsize)
        flats[key] = _array_from_bytes(st, raw, big, name)
    missing = set(storages) - set(flats)
    if missing:
        raise InputError(f"{name}: storages {sorted(missing)[:3]} have no data (truncated file?)")
    return _materialize(obj, flats, name)


def _read(path: str | Path) -> _Checkpoint:
    p = Path(path)
    name = str(path)
    if not p.is_file():
        raise InputError(f"{name}: no such file")
    with p.open("rb") as f:
        head = f.read(4)
    if not head:
        raise InputError(f"{name}: empty file, not a PyTorch checkpoint")
    try:
        if head == b"PK\x03\x04":
            return _read_zip(p, name)
        if head[:1] == b"\x80":
            with p.open("rb") as f:
                return _read_legacy(f, name)
        if tarfile.is_tarfile(p):
            raise InputError(f"{name}: the pre-0.4 PyTorch tar checkpoint format is not supported")
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure of untrusted bytes is bad input
        raise InputError(f"{name}: corrupt or truncated PyTorch checkpoint ({type(e).__name__}: {_one_line(str(e))[:160]})") from None
    raise InputError(f"{name}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")


def read_torch_checkpoint(path: str | Path) -> Any:
    """The whole unpickled object of a PyTorch checkpoint, tensors as NumPy arrays.

    Containers keep their type (dict/OrderedDict/list/tuple); classes and functions
    outside the allow-list are :class:`Opaque` placeholders (a pickled ``nn.Module`` keeps
    its ``_parameters``, ``_buffers`` and ``_modules`` dicts as attributes).
    """
    return _read(path).obj


def _is_array_map(x: Any) -> bool:
    return isinstance(x, Mapping) and len(x) > 0 and all(isinstance(v, np.ndarray) for v in x.values())


def _module_state(mod: Opaque, prefix: str, out: dict[str, np.ndarray]) -> None:
    d = vars(mod)
    nonpersistent = d.get("_non_persistent_buffers_set")
    skip = set(nonpersistent) if isinstance(nonpersistent, (set, frozenset, list, tuple)) else set()
    for attr in ("_parameters", "_buffers"):
        entries = d.get(attr)
        for k, v in (entries.items() if isinstance(entries, Mapping) else ()):
            if isinstance(v, np.ndarray) and not (attr == "_buffers" and k in skip):
                out[prefix + k] = v
    modules = d.get("_modules")
    for k, sub in (modules.items() if isinstance(modules, Mapping) else ()):
        if isinstance(sub, Opaque):
            _module_state(sub, f"{prefix}{k}.", out)


def _find_state_dict(obj: Any) -> Mapping[str, np.ndarray] | None:
    if _is_array_map(obj):
        return obj
    if isinstance(obj, Opaque) and "_modules" in vars(obj):
        out: dict[str, np.ndarray] = {}
        _module_state(obj, "", out)
        return out or None
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if key in obj:
                found = _find_state_dict(obj[key])
                if found is not None:
                    return found
    return None


def load_torch_state_dict(path: str | Path, *, drop_aliases: bool = True) -> dict[str, np.ndarray]:
    """The flat state dict ``{name: array}`` of a PyTorch checkpoint, read without PyTorch.

    Accepts a plain state dict, a dict nesting it under one of :data:`STATE_DICT_KEYS`
    (e.g. ``{'model_state': ..., 'train_params': ...}``) or a whole pickled ``nn.Module``.
    Arrays are NumPy, C-contiguous, native byte order, the stored dtype (bfloat16 read as
    float32), in the file's order.

    drop_aliases: drop every entry that views exactly the same storage bytes (same
      storage, offset, shape and strides) as an earlier entry; e.g. the ``backbone.N.*``
      entries of the toolbox's PanNet/FusionNet files, which alias ``res{N+1}.*``.

    Raises InputError (one line, naming the file) for a missing, corrupt, truncated or
    unrecognised file, or one holding no state dict.
    """
    ckpt = _read(path)
    sd = _find_state_dict(ckpt.obj)
    if sd is None:
        what = type(ckpt.obj).__name__
        if isinstance(ckpt.obj, Mapping):
            what += f" with keys {[str(k) for k in list(ckpt.obj)[:8]]}"
        raise InputError(f"{path}: no state dict of tensors found (top level: {what})")
    out: dict[str, np.ndarray] = {}
    seen: set[tuple[Any, ...]] = set()
    for k, v in sd.items():
        sig = ckpt.signatures.get(id(v))
        if drop_aliases and sig is not None:
            if sig in seen:
                continue
            seen.add(sig)
        out[str(k)] = v
    return out
