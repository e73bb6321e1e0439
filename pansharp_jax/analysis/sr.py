"""A small single-band x``ratio`` super-resolution network: the paper's "sinc phenomenon".

Deng et al. (ICML 2024) observe that a trained SR network, fed a single-pixel impulse,
answers (before clamping) with a sinc-like kernel: negative side lobes, as an ideal
low-pass filter. This module trains such a network on PAN patches so that
:func:`pansharp_jax.analysis.hyra.sr_impulse_response` can measure it:

* :class:`SRNet`: ``depth`` 3x3 convolutions with ReLU, a 3x3 convolution to
  ``ratio**2`` channels and a depth-to-space (pixel-shuffle) tail, no skip connection:
  (N, h, w, 1) -> (N, ratio*h, ratio*w, 1). LR pixel ``(i, j)`` becomes the HR block
  ``ratio*i .. ratio*i + ratio - 1``, centred on HR ``ratio*i + (ratio - 1)/2``, which is
  where MATLAB's bicubic ``imresize(x, 1/ratio)`` puts LR sample ``i``.
* :func:`training_pairs`: HR images (PAN bands on [0, 1]) and their LR versions by our
  MATLAB-exact bicubic downsampling (:func:`pansharp_jax.data.resize.imresize_bicubic`,
  antialiased), made once per whole image (no border effects inside patches).
* :func:`train_sr`: L1 loss on random aligned patch pairs, Adam (optax), jitted step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pansharp_jax.errors import InputError

__all__ = ["SRNet", "TrainedSR", "depth_to_space", "keys_cubic", "training_pairs", "train_sr"]


def depth_to_space(x: jax.Array, ratio: int) -> jax.Array:
    """(N, h, w, ratio*ratio*C) -> (N, ratio*h, ratio*w, C); channel ``(dy*ratio + dx)*C + c``
    goes to HR pixel ``(ratio*i + dy, ratio*j + dx)`` of band ``c``."""
    n, h, w, cc = x.shape
    c = cc // (ratio * ratio)
    x = x.reshape(n, h, w, ratio, ratio, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * ratio, w * ratio, c)


class SRNet(nn.Module):
    """Conv-ReLU stack + pixel-shuffle tail (see module docstring). Input/output on [0, 1]."""

    ratio: int = 4
    features: int = 32
    depth: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (N, h, w, 1) LR on [0, 1] -> (N, ratio*h, ratio*w, 1), raw (not clamped)."""
        y = x
        for _ in range(self.depth):
            y = nn.relu(nn.Conv(self.features, (3, 3), padding="SAME")(y))
        y = nn.Conv(self.ratio * self.ratio, (3, 3), padding="SAME")(y)
        return depth_to_space(y, self.ratio)


def keys_cubic(x: Any, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (MATLAB's ``cubic``, a = -0.5), x in input samples."""
    ax = np.abs(np.asarray(x, np.float64))
    near = ((a + 2) * ax**3 - (a + 3) * ax**2 + 1) * (ax <= 1)
    far = (a * ax**3 - 5 * a * ax**2 + 8 * a * ax - 4 * a) * ((ax > 1) & (ax < 2))
    return near + far


def training_pairs(images: Sequence[np.ndarray], ratio: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """(HR, LR) pairs: each (H, W) or (H, W, 1) image on [0, 1], cropped to a multiple of
    ``ratio``, and its bicubic (antialiased, MATLAB ``imresize``) x``1/ratio`` version.

    Returns float32 arrays (H, W, 1) and (H/ratio, W/ratio, 1).
    """
    from pansharp_jax.data.resize import imresize_bicubic

    pairs = []
    for img in images:
        a = np.asarray(img, np.float64)
        a = a[..., 0] if a.ndim == 3 else a
        if a.ndim != 2:
            raise InputError(f"SR training images must be single-band (H, W), got shape {np.shape(img)}")
        h, w = (a.shape[0] // ratio) * ratio, (a.shape[1] // ratio) * ratio
        if min(h, w) < 8 * ratio:
            raise InputError(f"SR training image {a.shape} is smaller than {8 * ratio} pixels")
        hr = a[:h, :w, None]
        with jax.enable_x64(True):
            lr = np.asarray(imresize_bicubic(jnp.asarray(hr), 1.0 / ratio))
        pairs.append((hr.astype(np.float32), lr.astype(np.float32)))
    return pairs


@dataclasses.dataclass
class TrainedSR:
    """A trained :class:`SRNet`: ``params``, the module, and the loss of every step."""

    model: SRNet
    params: Any
    losses: list[float]

    def apply_fn(self) -> Callable[[np.ndarray], np.ndarray]:
        """Jitted ``(N, h, w, 1) -> (N, ratio*h, ratio*w, 1)`` raw output (no clamping)."""
        fn = jax.jit(lambda x: self.model.apply({"params": self.params}, x))
        return lambda x: np.asarray(fn(jnp.asarray(x, jnp.float32)))


def _sample(rng: np.random.Generator, pairs: list[tuple[np.ndarray, np.ndarray]], ratio: int, patch: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    his, los = [], []
    for _ in range(batch):
        hr, lr = pairs[int(rng.integers(len(pairs)))]
        i = int(rng.integers(lr.shape[0] - patch + 1))
        j = int(rng.integers(lr.shape[1] - patch + 1))
        los.append(lr[i : i + patch, j : j + patch])
        his.append(hr[ratio * i : ratio * (i + patch), ratio * j : ratio * (j + patch)])
    return np.stack(los), np.stack(his)


def train_sr(
    images: Sequence[np.ndarray],
    *,
    ratio: int = 4,
    steps: int = 300,
    batch: int = 16,
    patch: int = 16,
    learning_rate: float = 1e-3,
    features: int = 32,
    depth: int = 4,
    seed: int = 0,
) -> TrainedSR:
    """Train an :class:`SRNet` on random patches of ``images`` (L1 loss, Adam).

    Args:
      images: single-band HR images on [0, 1] (e.g. PAN bands), each >= ``8 * ratio``
        and >= ``patch * ratio`` pixels a side.
      ratio: scale factor. steps, batch, learning_rate: the optimisation.
      patch: LR patch side (HR patches are ``ratio * patch``).
      features, depth: the network's width and number of ReLU convolutions.
      seed: initialisation and patch sampling.

    Returns:
      :class:`TrainedSR` with the loss (mean absolute error on [0, 1]) of every step.
    """
    pairs = training_pairs(images, ratio)
    if any(min(lr.shape[:2]) < patch for _, lr in pairs):
        raise InputError(f"an SR training image is smaller than the LR patch of {patch} pixels")
    model = SRNet(ratio=ratio, features=features, depth=depth)
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, patch, patch, 1)))["params"]
    tx = optax.adam(learning_rate)
    opt = tx.init(params)

    @jax.jit
    def step(params: Any, opt: Any, lr: jax.Array, hr: jax.Array) -> tuple[Any, Any, jax.Array]:
        def loss_fn(p: Any) -> jax.Array:
            return jnp.mean(jnp.abs(model.apply({"params": p}, lr) - hr))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(int(steps)):
        lr, hr = _sample(rng, pairs, ratio, patch, batch)
        params, opt, loss = step(params, opt, jnp.asarray(lr), jnp.asarray(hr))
        losses.append(float(loss))
    return TrainedSR(model, params, losses)
