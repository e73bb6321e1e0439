"""The :class:`Method`: a fusion method ready to run, whatever its source.

A method fuses batches of same-sized windows (the one call every caller goes through:
whole scenes, tiles of a scene larger than memory, catalogues), says how much context a
window needs for its output to equal the whole-scene output (``margin``), and carries
the provenance written into products (``tags``).

Conventions: arrays are NHWC float on the [0, 1] scale (DN / (2**bits - 1)); ``lrms``
(N, h, w, C), ``pan`` (N, H, W, 1) with H = ratio * h; outputs (N, H, W, C) on the same
scale. :meth:`Method.fuse` clips to [0, 1] by default (a product), ``clip=False`` keeps
the raw network / formula output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from pansharp_jax.errors import InputError

if TYPE_CHECKING:
    from pansharp_jax.data.scene import Scene
    from pansharp_jax.data.sensors import Sensor

# fuse_batch(lrms (N,h,w,C), pan (N,H,W,1), sensor, ratio[, lms=(N,H,W,C)]) -> (N,H,W,C), [0, 1], raw
FuseBatch = Callable[..., np.ndarray]
# margin(ratio) -> PAN pixels of context a window needs on each side
MarginFn = Callable[[int], int]
# sample_batch(lrms (N,h,w,C), pan (N,H,W,1), sensor, ratio, *, samples, steps, rng[, lms]) -> (mean, std),
# each (N,H,W,C) on the [0, 1] scale, not clipped (generative methods; see methods/sources.py)
SampleBatch = Callable[..., tuple[np.ndarray, np.ndarray]]

LOCAL = "local"
GLOBAL = "global"


@dataclasses.dataclass(frozen=True)
class Method:
    """A fusion method ready to run on scenes or arrays.

    Attributes:
      name: canonical name (``"mtf_glp_hpm"``, ``"fusionnet"``).
      label: display name for tables and grids (``"MTF-GLP-HPM"``, ``"FusionNet"``).
      fuse_batch: ``(lrms, pan, sensor, ratio, lms=None) -> fused``: (N, h, w, C), (N, H, W, 1)
        -> (N, H, W, C), [0, 1] scale, not clipped. Windows of one shape share one compile.
        ``lms`` (N, H, W, C), when given, replaces the method's own upsampling of ``lrms``
        (windows of a larger scene take it from the scene's circular ``interp23tap``);
        methods that cannot take it ignore it.
      source: which source built it (``"classical"``, ``"model"``, ...).
      margin_fn: ``ratio -> PAN pixels`` of context each side of a window needs so that
        the window's core equals the whole-scene output (receptive field radius), or the
        documented margin of a method with a global receptive field.
      receptive: ``"local"`` (tiles equal the whole scene given ``margin``) or
        ``"global"`` (tiles are blended; see the README for the measured difference).
      streaming: for methods with whole-image statistics, ``(sensor, ratio) ->`` a
        :class:`pansharp_jax.classical.streaming.StreamingMethod` (statistics gathered
        in a first pass over the tiles, so that tiles equal the whole scene).
      bands, ratio: what the method requires (None: any).
      trained_sensor: the sensor its weights were trained for, when known.
      origin: one line saying where the parameters came from.
      tags: provenance written into products (method, weights file and SHA-256...).
      generative: whether :meth:`sample` is available.
      sample_batch: generative methods: ``(lrms, pan, sensor, ratio, *, samples, steps, rng,
        lms=None) -> (mean, std)`` of ``samples`` draws of ``steps`` steps each, (N, H, W, C)
        on the [0, 1] scale, not clipped; ``rng`` a JAX key. None for deterministic methods.
      dtype: the precision it computes in (``"float32"`` networks, ``"float64"`` classical);
        windows of a tiled scene get their ``lms`` in it, as the whole-scene path does.
      jax_fn: ``(sensor, ratio) -> f(lrms, pan)``, the pure jittable function behind
        ``fuse_batch`` (for XLA's memory analysis when planning tiles), or None.
    """

    name: str
    label: str
    fuse_batch: FuseBatch
    source: str = "classical"
    margin_fn: MarginFn = lambda ratio: 16 * ratio  # noqa: E731
    receptive: str = LOCAL
    streaming: Callable[[Any, int], Any] | None = None
    bands: int | None = None
    ratio: int | None = None
    trained_sensor: str | None = None
    origin: str = ""
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    generative: bool = False
    jax_fn: Callable[[Any, int], Callable[[Any, Any], Any]] | None = None
    dtype: str = "float32"
    sample_batch: SampleBatch | None = None

    def margin(self, ratio: int) -> int:
        """PAN pixels of context a tile needs on each side (a multiple of ``ratio``)."""
        m = int(self.margin_fn(int(ratio)))
        return -(-m // ratio) * ratio

    def check(self, nbands: int, ratio: int, what: str = "scene") -> None:
        """InputError when the method cannot fuse ``nbands`` bands at ``ratio``."""
        if self.bands is not None and nbands != self.bands:
            raise InputError(
                f"{self.label} ({self.origin or self.source}) expects an MS with {self.bands} bands, but {what} has "
                f"{nbands}: use weights trained for this sensor"
            )
        if self.ratio is not None and int(ratio) != int(self.ratio):
            raise InputError(f"{self.label} ({self.origin or self.source}) is built for ratio {self.ratio}, but {what} has ratio {ratio}")

    def fuse_arrays(self, lrms: Any, pan: Any, *, sensor: Any = None, ratio: int | None = None, clip: bool = True) -> np.ndarray:
        """Fuse arrays: lrms (h, w, C) or (N, h, w, C), pan (H, W[, 1]) or (N, H, W, 1), [0, 1].

        Returns the fused image(s), float64 on [0, 1] (clipped unless ``clip=False``), with
        the batch dimension only if the inputs had one.
        """
        from pansharp_jax.data.sensors import get_sensor

        lr, p = np.asarray(lrms, np.float64), np.asarray(pan, np.float64)
        single = lr.ndim == 3
        if single:
            lr = lr[None]
            p = p[None] if p.ndim == 3 else p[None, ..., None]
        if p.ndim == 3:
            p = p[..., None]
        if lr.ndim != 4 or p.ndim != 4 or p.shape[-1] != 1 or p.shape[0] != lr.shape[0]:
            raise InputError(f"lrms must be (h, w, C) or (N, h, w, C) and pan (H, W[, 1]) alike; got {lr.shape} and {p.shape}")
        r = int(ratio) if ratio is not None else p.shape[1] // max(lr.shape[1], 1)
        if p.shape[1:3] != (r * lr.shape[1], r * lr.shape[2]):
            raise InputError(f"pan {p.shape[1]}x{p.shape[2]} is not ratio {r} x lrms {lr.shape[1]}x{lr.shape[2]}")
        self.check(lr.shape[-1], r, "the input")
        out = np.asarray(self.fuse_batch(lr, p, get_sensor(sensor), r), np.float64)
        if out.shape != (*p.shape[:3], lr.shape[-1]):
            raise RuntimeError(f"method {self.name} returned shape {out.shape}, expected {(*p.shape[:3], lr.shape[-1])}")
        if clip:
            out = finish_product(out)
        return out[0] if single else out

    def fuse(self, scene: Scene, *, clip: bool = True) -> np.ndarray:
        """Fuse a whole in-memory :class:`~pansharp_jax.data.scene.Scene`: (H, W, C) on [0, 1].

        ``clip=True`` (the default, what products hold) clips to [0, 1] and replaces
        NaN/Inf by 0; ``clip=False`` returns the raw output.
        """
        return self.fuse_arrays(scene.lrms, scene.pan, sensor=scene.sensor, ratio=scene.ratio, clip=clip)

    def run(self, scene: Scene) -> np.ndarray:
        """The raw (unclipped) whole-scene output, (H, W, C) on the [0, 1] scale."""
        return self.fuse(scene, clip=False)

    def sample(self, scene: Scene, *, samples: int = 8, steps: int = 50, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Generative methods: (mean, per-pixel std) of ``samples`` draws, each (H, W, C) float64.

        Both on the [0, 1] scale, not clipped (std with ddof 0: 0 for one sample). ``rng``: an
        int seed (None: 0) or a JAX key; draw s uses ``split(key, samples)[s]``, so the result
        depends only on the seed, ``samples`` and ``steps``. Deterministic methods raise
        InputError (there is nothing to sample).
        """
        if not self.generative or self.sample_batch is None:
            raise InputError(f"{self.label} is deterministic: 'sample' is for generative methods (use fuse)")
        import jax

        from pansharp_jax.data.sensors import get_sensor

        if int(samples) < 1 or int(steps) < 1:
            raise InputError(f"samples and steps must be >= 1, got {samples} and {steps}")
        self.check(scene.nbands, scene.ratio)
        if rng is None or isinstance(rng, (int, np.integer)):
            rng = jax.random.PRNGKey(int(rng or 0))
        lrms = np.asarray(scene.lrms, np.float32)[None]
        pan = np.asarray(scene.pan, np.float32).reshape(1, *scene.pan.shape[:2], 1)
        sensor = get_sensor(scene.sensor)
        mean, std = self.sample_batch(lrms, pan, sensor, int(scene.ratio), samples=int(samples), steps=int(steps), rng=rng)
        return np.asarray(mean, np.float64)[0], np.asarray(std, np.float64)[0]


def finish_product(x: np.ndarray) -> np.ndarray:
    """A product's values: NaN/Inf -> 0, then clipped to [0, 1] (float64, any shape)."""
    return np.clip(np.nan_to_num(np.asarray(x, np.float64), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
