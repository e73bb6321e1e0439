"""Low-rank adaptation (LoRA, Hu et al. 2022) of Flax Dense and Conv layers, usable by any model.

A LoRA layer is the base layer with its kernel replaced by ``W + (alpha / rank) reshape(A @ B)``:

* :class:`LoRADense`: kernel ``W`` (din, dout); ``A`` (din, rank), ``B`` (rank, dout).
* :class:`LoRAConv`: kernel ``W`` (kh, kw, cin / groups, cout) (NHWC, HWIO like ``nn.Conv``);
  ``A`` (kh * kw * cin / groups, rank), ``B`` (rank, cout), i.e. a kh x kw conv to ``rank``
  channels followed by a 1 x 1 conv to ``cout``, folded into one kernel.

``A`` is drawn uniformly with variance 1 / (3 fan-in) (PyTorch's ``kaiming_uniform_(a=sqrt(5))``,
the common LoRA choice; ``a_init`` changes it), ``B`` starts at zero, so a fresh LoRA layer
computes exactly its base layer (bit-identical: ``W + 0`` is ``W`` and the same convolution /
``dot_general`` runs). Base parameters keep ``nn.Dense`` / ``nn.Conv``'s names (``kernel``,
``bias``); the factors are ``lora_a`` and ``lora_b`` beside them. ``rank = 0`` is the plain
layer (no factors), so :func:`merge_lora` turns a LoRA model's params into those of the same
model built with ``rank = 0`` ("no extra parameters at inference").

Training only the factors is a matter of freezing every other leaf: :func:`frozen_prefixes`
gives the ``config.optim.frozen`` prefixes (:mod:`pansharp_jax.train.optim`) that freeze all
but the LoRA factors under chosen sub-trees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError

LORA_A, LORA_B = "lora_a", "lora_b"
LORA_NAMES = (LORA_A, LORA_B)
Initializer = Callable[..., jax.Array]
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default layer init, and loralib's for A.
TORCH_UNIFORM: Initializer = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def lora_scale(rank: int, alpha: float | None) -> float:
    """The LoRA scale ``alpha / rank`` (1 when ``alpha`` is None); 0 for ``rank = 0``."""
    if int(rank) < 0:
        raise InputError(f"LoRA rank must be >= 0, got {rank}")
    if int(rank) == 0:
        return 0.0
    return 1.0 if alpha is None else float(alpha) / int(rank)


def lora_kernel(kernel: jax.Array, a: jax.Array, b: jax.Array, scale: float) -> jax.Array:
    """``kernel + scale * reshape(a @ b)``: kernel (..., dout), a (prod(kernel.shape[:-1]), r), b (r, dout)."""
    return kernel + (scale * (a @ b)).reshape(kernel.shape).astype(kernel.dtype)


class LoRADense(nn.Module):
    """``nn.Dense`` with a LoRA update: (..., din) -> (..., features).

    Attributes:
      features: output width.
      rank: LoRA rank (0: the plain Dense, no factors).
      alpha: LoRA alpha (scale ``alpha / rank``; None: scale 1).
      use_bias: add a bias (as ``nn.Dense``).
      kernel_init, bias_init: the base layer's initialisers (``nn.Dense``'s defaults).
      a_init: the initialiser of ``A`` (module docstring); ``B`` is always zero at init.
    """

    features: int
    rank: int = 0
    alpha: float | None = None
    use_bias: bool = True
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()
    a_init: Initializer = TORCH_UNIFORM

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        lora_scale(self.rank, self.alpha)  # checks the rank
        din = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (din, self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32) if self.use_bias else None
        if self.rank > 0:
            a = self.param(LORA_A, self.a_init, (din, self.rank), jnp.float32)
            b = self.param(LORA_B, nn.initializers.zeros_init(), (self.rank, self.features), jnp.float32)
            kernel = lora_kernel(kernel, a, b, lora_scale(self.rank, self.alpha))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)  # as nn.Dense(dtype=None): mixed precision
        y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
        return y + bias.reshape((1,) * (y.ndim - 1) + (-1,)) if bias is not None else y


class LoRAConv(nn.Module):
    """``nn.Conv`` (NHWC, HWIO) with a LoRA update: (B, H, W, cin) -> (B, H', W', features).

    Attributes:
      features: output channels.
      kernel_size: (kh, kw).
      strides: (sh, sw).
      padding: ``'SAME'``, ``'VALID'`` or ((top, bottom), (left, right)), as ``lax.conv_general_dilated``.
      feature_group_count: grouped / depthwise convolution (cin and features divisible by it).
      rank, alpha, use_bias, kernel_init, bias_init, a_init: as :class:`LoRADense`.
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: Any = "SAME"
    feature_group_count: int = 1
    rank: int = 0
    alpha: float | None = None
    use_bias: bool = True
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()
    a_init: Initializer = TORCH_UNIFORM

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise InputError(f"LoRAConv input must be NHWC (B, H, W, C), got shape {x.shape}")
        lora_scale(self.rank, self.alpha)  # checks the rank
        g = int(self.feature_group_count)
        cin = x.shape[-1]
        if cin % g or self.features % g:
            raise InputError(f"LoRAConv: {cin} input and {self.features} output channels must be divisible by {g} groups")
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (kh, kw, cin // g, self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32) if self.use_bias else None
        if self.rank > 0:
            a = self.param(LORA_A, self.a_init, (kh * kw * cin // g, self.rank), jnp.float32)
            b = self.param(LORA_B, nn.initializers.zeros_init(), (self.rank, self.features), jnp.float32)
            kernel = lora_kernel(kernel, a, b, lora_scale(self.rank, self.alpha))
        padding = self.padding if isinstance(self.padding, str) else tuple(tuple(p) for p in self.padding)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)  # as nn.Conv(dtype=None): mixed precision
        y = jax.lax.conv_general_dilated(
            x, kernel, tuple(self.strides), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=g
        )
        return y + bias.reshape(1, 1, 1, -1) if bias is not None else y


# ----------------------------------------------------------------------------- param trees
def _path_name(path: Sequence[Any]) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def is_lora_path(name: str) -> bool:
    """Whether the ``/``-separated param path ``name`` is a LoRA factor (ends in lora_a / lora_b)."""
    return name.rsplit("/", 1)[-1] in LORA_NAMES


def param_paths(params: Any) -> list[str]:
    """Every leaf of a params tree as a ``/``-separated path, in tree order."""
    return [_path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def lora_paths(params: Any, under: Sequence[str] = ("",)) -> list[str]:
    """The LoRA factors' paths of ``params`` lying under any of the ``under`` prefixes ('' = all)."""
    return [p for p in param_paths(params) if is_lora_path(p) and _under(p, under)]


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(not f or name == f or name.startswith(f.rstrip("/") + "/") for f in prefixes)


def frozen_prefixes(params: Any, trainable: Callable[[str], bool]) -> list[str]:
    """The fewest ``/``-separated prefixes covering exactly the leaves with ``not trainable(path)``.

    A sub-tree whose leaves are all frozen is named once (its path); a mixed one is split.
    The list is what ``config.optim.frozen`` takes (join it with commas). Empty when every
    leaf trains; ``['']`` is never returned (freezing everything is refused: nothing to train).
    """

    def visit(node: Any, path: str) -> list[str] | None:  # None: every leaf below is frozen
        if not isinstance(node, Mapping):
            return None if not trainable(path) else []
        items: list[str] = []
        all_frozen = True
        for k, v in node.items():
            child = f"{path}/{k}" if path else str(k)
            below = visit(v, child)
            if below is None:
                items.append(child)
            else:
                all_frozen = False
                items.extend(below)
        return None if all_frozen and node else items

    out = visit(params, "")
    if out is None:
        raise InputError("frozen_prefixes: no parameter would train")
    return out


def freeze_all_but_lora(params: Any, under: Sequence[str] = ("",)) -> list[str]:
    """``config.optim.frozen`` prefixes that train only the LoRA factors under ``under`` ('' = all).

    InputError when no LoRA factor lies under the prefixes (rank 0, or a wrong prefix).
    """
    if not lora_paths(params, under):
        raise InputError(f"no LoRA parameters under {', '.join(repr(u) for u in under)}")
    return frozen_prefixes(params, lambda p: is_lora_path(p) and _under(p, under))


def merge_lora(params: Any, scale: float) -> Any:
    """Fold every layer's factors into its kernel and drop them: the params of the rank-0 model.

    ``kernel' = kernel + scale * reshape(lora_a @ lora_b)`` for every mapping holding
    ``kernel``, ``lora_a`` and ``lora_b``; other leaves are returned unchanged (same objects).
    ``scale`` is the layers' ``alpha / rank`` (:func:`lora_scale`).
    """
    if not isinstance(params, Mapping):
        return params
    if LORA_A in params and LORA_B in params and "kernel" in params:
        out = {k: v for k, v in params.items() if k not in LORA_NAMES}
        a, b = jnp.asarray(params[LORA_A]), jnp.asarray(params[LORA_B])
        out["kernel"] = lora_kernel(jnp.asarray(params["kernel"]), a, b, scale)
        return out
    return {k: merge_lora(v, scale) for k, v in params.items()}


def count_lora(params: Any, under: Sequence[str] = ("",)) -> int:
    """Number of LoRA factor values under ``under`` (for logs and tests)."""
    flat = {_path_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    return int(sum(np.size(flat[p]) for p in lora_paths(params, under)))


__all__ = [
    "LORA_A", "LORA_B", "LORA_NAMES", "TORCH_UNIFORM", "LoRAConv", "LoRADense", "count_lora", "freeze_all_but_lora",
    "frozen_prefixes", "is_lora_path", "lora_kernel", "lora_paths", "lora_scale", "merge_lora", "param_paths",
]  # fmt: skip
