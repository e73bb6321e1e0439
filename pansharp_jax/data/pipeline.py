"""Training input pipelines: sources, a deterministic sharded sampler, a resumable iterator.

Sources (random access, ``len(src)`` and ``src[i] -> {"lrms", "pan", "lms", "gt"}`` of
float32 HWC arrays on [0, 1]; ``src.get_batch(indices)`` stacks them NHWC):

* :class:`PanCollectionSource`: a PanCollection ``.h5`` file (datasets ``gt``, ``ms``,
  ``lms``, ``pan``, N x C x H x W, stored in DN). Read lazily with h5py, one sample per
  read; the whole file is never loaded. Values are divided by ``scale`` (2047 for the
  11-bit sensors, 1023 for GF2).
* :func:`wald_patch_sources`: training and validation patches simulated by the Wald
  protocol from one full-resolution scene (its MS becomes the GT). The held-out region
  (e.g. the right quarter) is cut off *before* degradation, so no training input, not even
  through the 41-tap MTF filter, sees a held-out pixel.
* :class:`ArraySource`: stacks of NHWC arrays in memory (the Wald patches; MHIF scenes).

Sampling: :class:`EpochSampler` draws one permutation per epoch from ``(seed, epoch)``
(Philox raw bits, argsorted: stable across NumPy versions) and cuts it into *global*
batches; JAX process ``p`` of ``P`` takes rows ``[p*B/P, (p+1)*B/P)`` of each global
batch. The global batch at a step is therefore the same whatever the number of processes,
so a 2-host run trains on exactly the batches of a 1-host run. The incomplete last batch
of an epoch is dropped.

:class:`BatchIterator` yields local batches (dicts of float32 NHWC NumPy arrays) and has
a small state ``{"epoch", "position", "seed"}`` (``get_state`` / ``set_state``) that the
trainer stores in its checkpoints: restoring it gives the same next batches.

Why not grain: grain shards a dataset per process (each host gets its own slice and its
own batches), so the batch seen at a step would depend on the process count and a
multi-host run could not reproduce a single-host run; its iterator state is also an
opaque blob. The sampler here is ~50 lines, has no worker processes, and makes the
reproducibility guarantees of the trainer easy to state and test.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pansharp_jax.errors import InputError

ROLES = ("lrms", "pan", "lms", "gt")
Batch = dict[str, np.ndarray]


class Source(Protocol):
    """A random-access dataset of pan-sharpening samples (HWC float32 on [0, 1])."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Batch: ...

    def get_batch(self, indices: Sequence[int]) -> Batch: ...


def _stack(items: list[Batch]) -> Batch:
    return {k: np.stack([it[k] for it in items]) for k in items[0]}


# ----------------------------------------------------------------------------- sources


def upsample_lms(lrms: np.ndarray, ratio: int, chunk: int = 256) -> np.ndarray:
    """``interp23tap`` (powers of two) or ``interp_general`` of (N, h, w, C) LRMS, float32."""
    import jax.numpy as jnp

    from pansharp_jax.data import wald

    ratio = int(ratio)
    fn = wald.interp23tap if ratio & (ratio - 1) == 0 else wald.interp_general
    lrms = np.asarray(lrms, np.float32)
    out = [np.asarray(fn(jnp.asarray(lrms[i : i + chunk]), ratio)) for i in range(0, len(lrms), chunk)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0,) * 4, np.float32)


class ArraySource:
    """Samples held in memory as NHWC arrays.

    Args:
      lrms: (N, h, w, C) low-resolution MS on [0, 1].
      pan: (N, H, W, P) guide image (PAN, or an MSI for MHIF) on [0, 1], H = ratio*h.
      lms: (N, H, W, C) upsampled MS; computed with :func:`upsample_lms` when None.
      gt: (N, H, W, C) reference, or None (then batches have no ``gt``).
      ratio: the resolution ratio.
      boxes: optional (N, 4) int array of where each sample came from (r0, r1, c0, c1).
    """

    def __init__(
        self,
        lrms: np.ndarray,
        pan: np.ndarray,
        lms: np.ndarray | None = None,
        gt: np.ndarray | None = None,
        *,
        ratio: int = 4,
        boxes: np.ndarray | None = None,
    ) -> None:
        lrms, pan = np.asarray(lrms, np.float32), np.asarray(pan, np.float32)
        if lrms.ndim != 4 or pan.ndim != 4:
            raise InputError(f"arrays must be NHWC, got lrms {lrms.shape} and pan {pan.shape}")
        if lms is None:
            lms = upsample_lms(lrms, ratio)
        arrays = {"lrms": lrms, "pan": pan, "lms": np.asarray(lms, np.float32)}
        if gt is not None:
            arrays["gt"] = np.asarray(gt, np.float32)
        n = len(lrms)
        for k, a in arrays.items():
            if len(a) != n:
                raise InputError(f"{k} has {len(a)} samples, lrms has {n}")
        h, w = pan.shape[1:3]
        if lrms.shape[1:3] != (h // ratio, w // ratio) or h % ratio or w % ratio:
            raise InputError(f"shape mismatch: pan {pan.shape[1:3]} is not ratio {ratio} x lrms {lrms.shape[1:3]}")
        for k in ("lms", "gt"):
            if k in arrays and arrays[k].shape[1:] != (h, w, lrms.shape[-1]):
                raise InputError(f"shape mismatch: {k} is {arrays[k].shape[1:]}, expected {(h, w, lrms.shape[-1])}")
        self.arrays = arrays
        self.ratio = int(ratio)
        self.boxes = None if boxes is None else np.asarray(boxes, np.int64)

    def __len__(self) -> int:
        return len(self.arrays["lrms"])

    def __getitem__(self, index: int) -> Batch:
        return {k: a[int(index)] for k, a in self.arrays.items()}

    def get_batch(self, indices: Sequence[int]) -> Batch:
        idx = np.asarray(indices, np.int64)
        return {k: a[idx] for k, a in self.arrays.items()}


class PanCollectionSource:
    """A PanCollection ``.h5`` file, read one sample at a time.

    Args:
      path: the ``.h5`` file (datasets N x C x H x W in DN).
      scale: DN of value 1.0 (2047 for WV3/WV2/QB, 1023 for GF2); values are divided by it.
      keys: dataset names per role, default ``{"lrms": "ms", "pan": "pan", "lms": "lms",
        "gt": "gt"}``; a role mapped to ``None`` (or a missing ``gt``) is left out.

    The file handle is opened on first access, once per OS process (reopened after a fork),
    so the source can be handed to worker processes.
    """

    DEFAULT_KEYS: Mapping[str, str | None] = {"lrms": "ms", "pan": "pan", "lms": "lms", "gt": "gt"}

    def __init__(
        self, path: str | os.PathLike[str], *, scale: float = 2047.0, keys: Mapping[str, str | None] | None = None
    ) -> None:
        import h5py

        self.path = Path(path)
        self.scale = float(scale)
        if not self.scale > 0:
            raise InputError(f"scale must be positive, got {scale}")
        if not self.path.is_file():
            raise InputError(f"file not found: {self.path}")
        wanted = dict(self.DEFAULT_KEYS) | dict(keys or {})
        self._handle: Any = None
        self._ds: dict[str, Any] = {}
        self._pid = -1
        try:
            with h5py.File(self.path, "r") as f:
                names = sorted(f.keys())
                self.keys: dict[str, str] = {}
                for role, name in wanted.items():
                    if name is None:
                        continue
                    if name not in f:
                        if role == "gt" and keys is None:
                            continue  # full-resolution h5 files have no gt
                        raise InputError(
                            f"dataset '{name}' (for {role}) not found in {self.path.name}; found: {', '.join(names)}"
                        )
                    if f[name].ndim != 4:
                        raise InputError(
                            f"dataset '{name}' in {self.path.name} must be N x C x H x W, got shape {f[name].shape}"
                        )
                    self.keys[role] = name
                for role in ("lrms", "pan"):
                    if role not in self.keys:
                        raise InputError(f"no {role} dataset in {self.path.name}")
                self.shapes = {role: tuple(int(s) for s in f[n].shape) for role, n in self.keys.items()}
                # PanCollection stores DN: a [0, 1] file divided by 2047 would turn black.
                peek = float(np.max(f[self.keys["pan"]][0]))
        except OSError as e:
            raise InputError(f"cannot read {self.path.name} as HDF5: {e}") from None
        counts = {role: s[0] for role, s in self.shapes.items()}
        if len(set(counts.values())) != 1:
            raise InputError(f"datasets in {self.path.name} have different sample counts: {counts}")
        self._n = counts["lrms"]
        if self.scale > 1.5 and 0.0 < peek <= 1.5:
            raise InputError(
                f"{self.path.name} looks normalised to [0, 1] already (PAN max {peek:.3g}); pass scale=1 (data.scale=1.0)"
            )

    def _datasets(self) -> dict[str, Any]:
        import h5py

        if self._handle is None or self._pid != os.getpid():
            self._handle = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._ds = {role: self._handle[name] for role, name in self.keys.items()}
        return self._ds

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle, self._ds = None, {}

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_handle"], d["_pid"], d["_ds"] = None, -1, {}
        return d

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> Batch:
        i = int(index)
        if not 0 <= i < self._n:
            raise IndexError(f"index {i} out of range for {self._n} samples")
        out = {}
        for role, ds in self._datasets().items():
            chw = np.asarray(ds[i], np.float64) / self.scale  # one sample: C x H x W, DN -> [0, 1]
            out[role] = np.ascontiguousarray(chw.transpose(1, 2, 0), dtype=np.float32)
        return out

    def get_batch(self, indices: Sequence[int]) -> Batch:
        return _stack([self[i] for i in indices])


# ------------------------------------------------------------------ Wald-simulated patches


@dataclasses.dataclass(frozen=True)
class Box:
    """A rectangle ``[r0, r1) x [c0, c1)`` on the full-resolution MS grid."""

    r0: int
    r1: int
    c0: int
    c1: int

    def overlaps(self, other: Box) -> bool:
        return self.r0 < other.r1 and other.r0 < self.r1 and self.c0 < other.c1 and other.c0 < self.c1


def split_holdout(
    height: int, width: int, side: str = "right", fraction: float = 0.25, multiple: int = 4
) -> tuple[Box, Box]:
    """Split an ``height`` x ``width`` grid into (train, held-out) boxes.

    The held-out box is the ``fraction`` of the grid on ``side`` (right, left, top,
    bottom), its edge rounded to a multiple of ``multiple``.
    """
    if side not in ("right", "left", "top", "bottom"):
        raise InputError(f"holdout side must be right, left, top or bottom, got {side!r}")
    if not 0.0 < fraction < 1.0:
        raise InputError(f"holdout fraction must be in (0, 1), got {fraction}")
    extent = width if side in ("right", "left") else height
    cut = int(round(extent * fraction / multiple)) * multiple
    if not 0 < cut < extent:
        raise InputError(f"holdout fraction {fraction} of {extent} px leaves an empty region (multiple of {multiple})")
    full = Box(0, height, 0, width)
    if side == "right":
        return dataclasses.replace(full, c1=width - cut), dataclasses.replace(full, c0=width - cut)
    if side == "left":
        return dataclasses.replace(full, c0=cut), dataclasses.replace(full, c1=cut)
    if side == "bottom":
        return dataclasses.replace(full, r1=height - cut), dataclasses.replace(full, r0=height - cut)
    return dataclasses.replace(full, r0=cut), dataclasses.replace(full, r1=cut)


def wald_reduce(ms: np.ndarray, pan: np.ndarray, sensor: Any, ratio: int) -> tuple[np.ndarray, np.ndarray]:
    """The toolbox's Wald degradation of an MS (h, w, C) and PAN (ratio*h, ratio*w, 1), in float64.

    Returns (lrms (h/ratio, w/ratio, C), pan_lr (h, w, 1)) as float64 NumPy arrays.
    """
    import jax
    import jax.numpy as jnp

    from pansharp_jax.data import wald

    with jax.enable_x64(True):
        lrms, pan_lr = wald.wald_degrade(jnp.asarray(ms, jnp.float64), jnp.asarray(pan, jnp.float64), sensor, ratio)
        return np.asarray(lrms), np.asarray(pan_lr)


def _tile(box: Box, patch: int, stride: int) -> list[Box]:
    rows = range(box.r0, box.r1 - patch + 1, stride)
    cols = range(box.c0, box.c1 - patch + 1, stride)
    return [Box(r, r + patch, c, c + patch) for r in rows for c in cols]


def _patches_from_region(
    ms: np.ndarray, pan: np.ndarray, region: Box, sensor: Any, ratio: int, patch: int, stride: int
) -> ArraySource:
    r = ratio
    gt = ms[region.r0 : region.r1, region.c0 : region.c1]
    pan_full = pan[region.r0 * r : region.r1 * r, region.c0 * r : region.c1 * r]
    lrms, pan_lr = wald_reduce(gt, pan_full, sensor, r)
    local = _tile(Box(0, region.r1 - region.r0, 0, region.c1 - region.c0), patch, stride)
    if not local:
        raise InputError(f"region {region} is smaller than one {patch} x {patch} patch")
    boxes = np.array([(b.r0 + region.r0, b.r1 + region.r0, b.c0 + region.c0, b.c1 + region.c0) for b in local])
    q = patch // r
    return ArraySource(
        lrms=np.stack([lrms[b.r0 // r : b.r0 // r + q, b.c0 // r : b.c0 // r + q] for b in local]),
        pan=np.stack([pan_lr[b.r0 : b.r1, b.c0 : b.c1] for b in local]),
        gt=np.stack([gt[b.r0 : b.r1, b.c0 : b.c1] for b in local]),
        ratio=r,
        boxes=boxes,
    )


def wald_patch_sources(
    scene: Any,
    *,
    patch: int = 64,
    stride: int = 32,
    holdout_side: str = "right",
    holdout_fraction: float = 0.25,
    val_patch: int | None = None,
    val_stride: int | None = None,
) -> tuple[ArraySource, ArraySource]:
    """Training and validation patches from a full-resolution scene (Wald protocol).

    The scene's MS grid (h x w) is split into a training box and a held-out box
    (:func:`split_holdout`); each box is degraded on its own (MS -> LRMS at 1/ratio, PAN ->
    the MS grid) with the toolbox's MTF filters, so that nothing from the held-out box leaks
    into training inputs. Patches are then cut with ``patch`` / ``stride`` (in pixels of the
    reduced PAN grid = the original MS grid; multiples of the ratio); the reduced LMS is
    ``interp23tap`` of each LRMS patch, as in PanCollection.

    Args:
      scene: a :class:`~pansharp_jax.data.scene.Scene` (its ``lrms`` is the full-res MS).
      patch, stride: training patch side and stride.
      holdout_side, holdout_fraction: the held-out region (validation only).
      val_patch, val_stride: validation tiles in the held-out region (default: ``patch``,
        non-overlapping).

    Returns:
      (train, val) :class:`ArraySource` with ``gt``; ``.boxes`` holds each patch's box on
      the scene's MS grid.
    """
    r = int(scene.ratio)
    val_patch = int(val_patch or patch)
    val_stride = int(val_stride or val_patch)
    for what, v in (("patch", patch), ("stride", stride), ("val_patch", val_patch), ("val_stride", val_stride)):
        if v <= 0 or v % r:
            raise InputError(f"{what} must be a positive multiple of the ratio {r}, got {v}")
    ms, pan = np.asarray(scene.lrms, np.float64), np.asarray(scene.pan, np.float64)
    h, w = ms.shape[:2]
    h, w = h - h % r, w - w % r  # degradation needs multiples of the ratio
    train_box, holdout_box = split_holdout(h, w, holdout_side, holdout_fraction, multiple=r)
    train = _patches_from_region(ms, pan, train_box, scene.sensor, r, int(patch), int(stride))
    val = _patches_from_region(ms, pan, holdout_box, scene.sensor, r, val_patch, val_stride)
    train.region, val.region = train_box, holdout_box  # type: ignore[attr-defined]
    return train, val


def full_res_patch_sources(
    scene: Any,
    *,
    patch: int = 64,
    stride: int = 32,
    holdout_side: str = "right",
    holdout_fraction: float = 0.25,
) -> tuple[ArraySource, ArraySource]:
    """Full-resolution patches of a scene, no Wald reduction and no ``gt`` (self-supervised use).

    The MS grid is split as in :func:`wald_patch_sources` (the same held-out box), and each
    box is cut into patches of ``patch`` x ``patch`` PAN pixels (a multiple of the ratio) with
    ``stride``: lrms (patch / ratio)^2 x C from the scene's MS, pan patch^2 x 1 from its PAN,
    lms the ``interp23tap`` of each LRMS patch. Returns (train, held-out) :class:`ArraySource`
    without ``gt``; ``.boxes`` are on the PAN grid.
    """
    r = int(scene.ratio)
    for what, v in (("patch", patch), ("stride", stride)):
        if v <= 0 or v % r:
            raise InputError(f"{what} must be a positive multiple of the ratio {r}, got {v}")
    ms, pan = np.asarray(scene.lrms, np.float32), np.asarray(scene.pan, np.float32)
    h, w = ms.shape[:2]
    h, w = h - h % r, w - w % r  # the boxes of wald_patch_sources
    q = int(patch) // r
    parts = []
    for box in split_holdout(h, w, holdout_side, holdout_fraction, multiple=r):
        pan_box = Box(box.r0 * r, box.r1 * r, box.c0 * r, box.c1 * r)
        tiles = _tile(pan_box, int(patch), int(stride))
        if not tiles:
            raise InputError(f"region {pan_box} of the PAN is smaller than one {patch} x {patch} patch")
        parts.append((pan_box, tiles, np.stack([ms[b.r0 // r : b.r0 // r + q, b.c0 // r : b.c0 // r + q] for b in tiles])))
    lms = upsample_lms(np.concatenate([p[2] for p in parts]), r)  # one call (one compilation) for both parts
    out, start = [], 0
    for pan_box, tiles, lrms in parts:
        src = ArraySource(
            lrms=lrms,
            pan=np.stack([pan[b.r0 : b.r1, b.c0 : b.c1] for b in tiles]),
            lms=lms[start : start + len(tiles)],
            ratio=r,
            boxes=np.array([(b.r0, b.r1, b.c0, b.c1) for b in tiles]),
        )
        src.region = pan_box  # type: ignore[attr-defined]
        out.append(src)
        start += len(tiles)
    return out[0], out[1]


def _concat_sources(sources: list[ArraySource]) -> ArraySource:
    """One :class:`ArraySource` holding the samples of several (same bands, ratio and patch size)."""
    if len(sources) == 1:
        return sources[0]
    keys = set(sources[0].arrays)
    if any(set(s.arrays) != keys or s.ratio != sources[0].ratio for s in sources):
        raise InputError("full-resolution scenes must share the ratio")
    try:
        arrays = {k: np.concatenate([s.arrays[k] for s in sources]) for k in sources[0].arrays}
    except ValueError as e:
        raise InputError(f"full-resolution scenes must share the band count: {e}") from None
    return ArraySource(arrays["lrms"], arrays["pan"], arrays["lms"], arrays.get("gt"), ratio=sources[0].ratio)


# ------------------------------------------------------------------ sampling and iteration


def _process() -> tuple[int, int]:
    import jax

    return jax.process_index(), jax.process_count()


class EpochSampler:
    """Deterministic per-epoch shuffling into global batches, sharded per process.

    Args:
      num_examples: dataset size N.
      global_batch_size: B, summed over all processes; divisible by the process count.
      seed: the shuffling seed (non-negative int); epoch ``e`` uses permutation(seed, e).
      shuffle: False keeps the dataset order (every epoch the same).
      process_index, process_count: this process and how many (default: JAX's).
    """

    def __init__(
        self,
        num_examples: int,
        global_batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        process_index: int | None = None,
        process_count: int | None = None,
    ) -> None:
        if process_index is None or process_count is None:
            pi, pc = _process()
            process_index = pi if process_index is None else process_index
            process_count = pc if process_count is None else process_count
        if global_batch_size <= 0 or global_batch_size % process_count:
            raise InputError(
                f"global batch size {global_batch_size} must be a positive multiple of the process count {process_count}"
            )
        if num_examples < global_batch_size:
            raise InputError(f"dataset has {num_examples} samples, fewer than one global batch of {global_batch_size}")
        if not 0 <= process_index < process_count:
            raise InputError(f"process index {process_index} outside [0, {process_count})")
        if seed < 0:
            raise InputError(f"seed must be >= 0, got {seed}")
        self.n, self.batch, self.seed, self.shuffle = (
            int(num_examples),
            int(global_batch_size),
            int(seed),
            bool(shuffle),
        )
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.local_batch = self.batch // self.process_count
        self.batches_per_epoch = self.n // self.batch
        self._cache: tuple[int, np.ndarray] | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the dataset in ``epoch`` (int64 indices)."""
        if not self.shuffle:
            return np.arange(self.n)
        if self._cache is None or self._cache[0] != epoch:
            bits = np.random.Philox(key=np.array([self.seed, epoch], np.uint64)).random_raw(self.n)
            self._cache = (epoch, np.argsort(bits, kind="stable"))
        return self._cache[1]

    def global_indices(self, epoch: int, position: int) -> np.ndarray:
        """The ``position``-th global batch of ``epoch``: B dataset indices."""
        if not 0 <= position < self.batches_per_epoch:
            raise IndexError(f"batch {position} outside the {self.batches_per_epoch} batches of an epoch")
        return self.permutation(epoch)[position * self.batch : (position + 1) * self.batch]

    def local_indices(self, epoch: int, position: int) -> np.ndarray:
        """This process's rows of the global batch (B / process_count indices)."""
        lo = self.process_index * self.local_batch
        return self.global_indices(epoch, position)[lo : lo + self.local_batch]


AUGMENTATIONS = ("none", "dihedral")


def check_augment(augment: str) -> str:
    """``augment`` if it names an augmentation of :data:`AUGMENTATIONS`, else an InputError."""
    if augment not in AUGMENTATIONS:
        raise InputError(f"data.augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
    return augment


def dihedral(batch: Batch, ops: np.ndarray) -> Batch:
    """Apply symmetry ``ops[i]`` to sample ``i`` of every (N, H, W, C) array of ``batch``.

    ``op = 4 * flip + k``: ``k`` counter-clockwise quarter turns (``np.rot90`` on H, W), after a
    flip of the rows when ``flip``. Other entries pass through unchanged.
    """
    out = dict(batch)
    for key, arr in batch.items():
        a = np.asarray(arr)
        if a.ndim != 4:
            continue
        if a.shape[1] != a.shape[2]:
            raise InputError(f"dihedral augmentation needs square patches; {key!r} is {a.shape[1]} x {a.shape[2]}")
        out[key] = np.stack([np.rot90(a[i, ::-1] if op >= 4 else a[i], int(op) % 4) for i, op in enumerate(ops)])
    return out


class BatchIterator(Iterator[Batch]):
    """Endless iterator of local batches with a resumable state.

    ``next(it)`` returns ``{"lrms", "pan", "lms", "gt"}`` float32 NHWC NumPy arrays of
    ``global_batch_size / process_count`` samples; call :meth:`peek_indices` (or
    :meth:`peek_global_indices`) before it for the batch's dataset sample indices (the
    trainer's cluster cache keys on them). ``get_state()`` is
    ``{"epoch", "position", "seed"}`` pointing at the *next* batch; ``set_state`` (or the
    ``state`` argument) continues from there.

    ``augment='dihedral'``: each sample is rotated by a multiple of 90 degrees and, for half of
    the draws, flipped (the 8 symmetries of the square), the same way in every array of the
    sample; the draw depends only on (seed, epoch, position, row of the global batch), so a
    resumed run sees the same batches. Square patches only. On Wald-reduced patches a flip
    moves the decimation phase by up to ratio - 1 pixels of the PAN grid relative to the
    reference, which is why it is off by default (the MAE, which sees ``gt`` only, uses it).
    """

    def __init__(
        self,
        source: Source,
        global_batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        process_index: int | None = None,
        process_count: int | None = None,
        state: Mapping[str, int] | None = None,
        augment: str = "none",
    ) -> None:
        self.source = source
        self.augment = check_augment(augment)
        self._args = dict(
            global_batch_size=global_batch_size,
            shuffle=shuffle,
            process_index=process_index,
            process_count=process_count,
        )
        self.sampler = EpochSampler(len(source), seed=seed, **self._args)  # type: ignore[arg-type]
        self.epoch, self.position = 0, 0
        if state is not None:
            self.set_state(state)

    def get_state(self) -> dict[str, int]:
        return {"epoch": int(self.epoch), "position": int(self.position), "seed": int(self.sampler.seed)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        missing = {"epoch", "position", "seed"} - set(state)
        if missing:
            raise InputError(f"iterator state lacks {', '.join(sorted(missing))}: {dict(state)}")
        epoch, position, seed = int(state["epoch"]), int(state["position"]), int(state["seed"])
        if seed != self.sampler.seed:
            self.sampler = EpochSampler(len(self.source), seed=seed, **self._args)  # type: ignore[arg-type]
        if epoch < 0 or not 0 <= position < self.sampler.batches_per_epoch:
            raise InputError(
                f"iterator state {dict(state)} is outside the dataset ({self.sampler.batches_per_epoch} batches per epoch)"
            )
        self.epoch, self.position = epoch, position

    def peek_indices(self) -> np.ndarray:
        """The dataset indices of this process's next batch (without advancing)."""
        return self.sampler.local_indices(self.epoch, self.position)

    def peek_dihedral(self) -> np.ndarray:
        """This process's rows of the next batch's symmetry draws (ints in [0, 8); see :func:`dihedral`)."""
        sm = self.sampler
        ops = np.random.default_rng([sm.seed, self.epoch, self.position, 0xD18]).integers(0, 8, sm.batch)
        lo = sm.process_index * sm.local_batch
        return ops[lo : lo + sm.local_batch]

    def peek_global_indices(self) -> np.ndarray:
        """The dataset indices of the next *global* batch (every process's rows, in order;
        the same on every process), without advancing. Its rows ``[p*B/P, (p+1)*B/P)`` are
        :meth:`peek_indices` of process ``p``."""
        return self.sampler.global_indices(self.epoch, self.position)

    def __next__(self) -> Batch:
        batch = self.source.get_batch(self.peek_indices())
        if self.augment == "dihedral":
            batch = dihedral(batch, self.peek_dihedral())
        self.position += 1
        if self.position == self.sampler.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        return batch


def iterate_in_order(
    source: Source,
    global_batch_size: int,
    *,
    limit: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[tuple[Batch, np.ndarray]]:
    """One ordered pass (evaluation): yields (local batch, valid global indices).

    Global batch ``k`` covers samples ``[k*B, (k+1)*B)``; the last one is padded by repeating
    the last sample, so every batch has ``B / process_count`` local rows. The second item
    lists the dataset indices of the global batch's real (non-padding) rows, which come
    first. ``limit`` > 0 evaluates only the first ``limit`` samples.
    """
    if process_index is None or process_count is None:
        process_index, process_count = _process()
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise InputError(
            f"eval batch size {global_batch_size} must be a positive multiple of the process count {process_count}"
        )
    n = len(source) if limit <= 0 else min(limit, len(source))
    local = global_batch_size // process_count
    for start in range(0, n, global_batch_size):
        idx = np.arange(start, start + global_batch_size)
        mine = idx[process_index * local : (process_index + 1) * local]
        yield source.get_batch(np.minimum(mine, n - 1)), idx[idx < n]


# --------------------------------------------------------------------------- from config


def resolve_path(path: str, root: str = "") -> Path:
    """``path`` as is when absolute, else under ``root`` or, when that is empty, ``$PANSHARP_DATA``."""
    p = Path(os.path.expanduser(path))
    if p.is_absolute():
        return p
    base = root or os.environ.get("PANSHARP_DATA", "")
    if not base:
        raise InputError(f"relative data path {path!r} needs data.root or the PANSHARP_DATA environment variable")
    return Path(os.path.expanduser(base)) / p


@dataclasses.dataclass
class DataInfo:
    """What the trainer needs to know about the data besides the sources."""

    sensor: str
    ratio: int
    max_dn: float
    rgb: tuple[int, int, int]


def build_sources(data: Mapping[str, Any]) -> tuple[Source, Source | None, DataInfo]:
    """(train, val or None, info) from a ``config.data`` block.

    ``data.kind``:
      * ``'panc'``: ``data.train`` / ``data.val`` PanCollection h5 files, ``data.scale``,
        ``data.sensor``, ``data.ratio``.
      * ``'wald_scene'``: ``data.scene`` (any file :func:`~pansharp_jax.data.io.load_scene`
        reads), ``data.patch``, ``data.stride``, ``data.holdout_side``,
        ``data.holdout_fraction``, ``data.val_patch``; ``data.sensor`` optional. With
        ``data.resolution = 'full'`` (default ``'reduced'``): full-resolution patches of the
        training box without ``gt`` and no validation set (:func:`full_res_patch_sources`;
        self-supervised models), ``data.scene`` may list several scenes (comma-separated) and
        ``data.pan_scene`` their PAN GeoTIFFs (GeoTIFF pairs).
      * ``'arrays'``: ``data.train`` / ``data.val`` ``.npz`` files with NHWC ``lrms``,
        ``pan``, ``gt`` (and optionally ``lms``), on [0, 1]; ``data.ratio``, ``data.sensor``.
        MHIF: :func:`~pansharp_jax.data.hsi.mhif_patches` arrays (``pan`` = the K-band guide).
      * ``'hisr'``: ``data.train`` / ``data.val`` PanCollection HISR h5 files (``LRHSI``,
        ``RGB``, ``HSI_up``, ``GT`` on [0, 1]; :func:`~pansharp_jax.data.hsi.hisr_source`);
        ``data.ratio``, ``data.scale`` (DN of 1.0 for DN-based metrics).
    """
    from pansharp_jax.data.sensors import get_sensor

    kind = str(data.get("kind", ""))
    root = str(data.get("root", "") or "")
    sensor_name = str(data.get("sensor", "") or "") or None
    if kind == "panc":
        sensor = get_sensor(sensor_name)
        scale = float(data.get("scale", 2047.0))
        train = PanCollectionSource(resolve_path(str(data["train"]), root), scale=scale)
        val = PanCollectionSource(resolve_path(str(data["val"]), root), scale=scale) if data.get("val") else None
        return train, val, DataInfo(sensor.name, int(data.get("ratio", 4)), scale, sensor.rgb)
    if kind == "wald_scene" and str(data.get("resolution", "reduced") or "reduced") == "full":
        from pansharp_jax.data.io import load_scene

        names = [p.strip() for p in str(data["scene"]).split(",") if p.strip()]
        pans = [p.strip() for p in str(data.get("pan_scene", "") or "").split(",") if p.strip()] or [None] * len(names)
        if len(pans) != len(names):
            raise InputError(f"data.pan_scene names {len(pans)} PAN files for {len(names)} scenes")
        scenes = [
            load_scene(resolve_path(n, root), sensor=sensor_name, pan_path=resolve_path(p, root) if p else None)
            for n, p in zip(names, pans)
        ]
        train = _concat_sources([
            full_res_patch_sources(
                sc,
                patch=int(data.get("patch", 64)),
                stride=int(data.get("stride", 32)),
                holdout_side=str(data.get("holdout_side", "right")),
                holdout_fraction=float(data.get("holdout_fraction", 0.25)),
            )[0]
            for sc in scenes
        ])
        first = scenes[0]
        return train, None, DataInfo(first.sensor.name, int(first.ratio), first.max_dn, first.sensor.rgb)
    if kind == "wald_scene":
        from pansharp_jax.data.io import load_scene

        scene = load_scene(resolve_path(str(data["scene"]), root), sensor=sensor_name)
        train, val = wald_patch_sources(
            scene,
            patch=int(data.get("patch", 64)),
            stride=int(data.get("stride", 32)),
            holdout_side=str(data.get("holdout_side", "right")),
            holdout_fraction=float(data.get("holdout_fraction", 0.25)),
            val_patch=int(data.get("val_patch", 0)) or None,
        )
        return train, val, DataInfo(scene.sensor.name, int(scene.ratio), scene.max_dn, scene.sensor.rgb)
    if kind == "arrays":
        sensor = get_sensor(sensor_name)
        ratio = int(data.get("ratio", 4))

        def load(p: str) -> ArraySource:
            with np.load(resolve_path(p, root)) as z:
                return ArraySource(z["lrms"], z["pan"], z["lms"] if "lms" in z else None, z["gt"], ratio=ratio)

        val = load(str(data["val"])) if data.get("val") else None
        return (
            load(str(data["train"])),
            val,
            DataInfo(sensor.name, ratio, float(data.get("scale", sensor.max_dn)), sensor.rgb),
        )
    if kind == "hisr":
        from pansharp_jax.data.hsi import hisr_source

        sensor = get_sensor(sensor_name)
        val = hisr_source(resolve_path(str(data["val"]), root)) if data.get("val") else None
        info = DataInfo(sensor.name, int(data.get("ratio", 4)), float(data.get("scale", 65535.0)), sensor.rgb)
        return hisr_source(resolve_path(str(data["train"]), root)), val, info
    raise InputError(f"unknown data.kind {kind!r}: use 'panc', 'wald_scene', 'arrays' or 'hisr'")
