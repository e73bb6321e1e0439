"""Mixed precision: one policy for training (``config.precision``) and inference (``--precision``).

A :class:`Policy` says in which float type the network computes (``"fp32"`` or ``"bf16"``)
and at which precision float32 matmuls and convolutions run (``"default"``, ``"tf32"``,
``"highest"``). :func:`policy_from_config` reads ``config.precision`` and
``config.matmul_precision`` (``configs/default.py``); :func:`get_policy` takes the two names.
It lives on the trainer's floor (3) so that the trainer and the method API (floor 4, the
``fuse`` path) share it; models (floor 2) need nothing from it: a policy is applied from outside.

bf16 recipe (what :func:`pansharp_jax.train.step.train_step` and the ``fuse`` path do):

* the parameters and the optimizer state stay float32 (the "master" copy); inside the
  differentiated function the parameters are cast to bf16 (:func:`cast_floating`, floating
  leaves only: integer and boolean leaves and PRNG keys are left as they are), so the
  gradient of the cast brings the gradients back to float32 for the float32 parameters;
* the network inputs (``lrms``, ``pan``, ``lms``) are cast to bf16; ``gt``, the loss target
  (also what a model's own objective compares with), stays float32;
* while the model runs, :meth:`Policy.layers` intercepts every Flax ``Dense``,
  ``DenseGeneral``, ``Einsum``, ``Conv``, ``ConvTranspose`` and ``ConvLocal`` call whose
  ``dtype`` is None (the layer's "promote" default), and every LoRA layer
  (:mod:`pansharp_jax.nn.lora`), and casts its floating inputs to bf16;
* the model output is cast back to float32 before the loss; the loss, the metrics, the
  gradient norms and the optimizer update are float32.

Why this equals setting ``dtype=jnp.bfloat16`` on every layer: a Flax linear layer with
``dtype=None`` computes in ``promote_types(input, kernel, bias)``; with bf16 parameters and
inputs cast to bf16 by the interceptor that is bf16, which is exactly what ``dtype=bf16``
does (cast inputs and parameters to bf16, compute and return bf16). Flax norms
(``LayerNorm``, ``GroupNorm``, ``BatchNorm``, ``RMSNorm``) compute their mean and variance in
float32 whatever the input (``force_float32_reductions=True``, the default) and return the
promoted dtype. Without the interceptor, a float32 constant inside a model (a positional
embedding computed in float32, a timestep embedding, noise drawn in float32, an explicit
``.astype(jnp.float32)``) promotes the activations back to float32 and every later layer
would silently compute in float32; with it, only hand-written ``lax.conv`` / ``jnp.einsum``
/ ``@`` on such activations stay float32. Layers built with an explicit ``dtype`` (e.g. a
float32 output head) keep it. :func:`dot_census` counts the ``dot_general`` / ``conv`` ops
of a traced function by operand dtypes; ``tests/test_precision.py`` prints it per model.
In a bf16 train step of the registry models every conv and nearly every matmul is bf16 x
bf16; the float32 ones left are the MAE's float32 output head (``mae``, ``unfolding``),
CANNet's k-means distances (``nn/kmeans.py``), the unfolding's degradation operators (its
iterate is float32 by design), the float32 softmax of ``jax.nn.dot_product_attention``
(``ssdiff``) and the per-direction scan projections and resizing of ``le_mamba``
(float32 x bf16 operands, computed in float32).

Numerics that must not run in bf16 convert locally: XLA has no bf16 FFT (the FFT-based
layers upcast to float32), k-means distances, the selective scan's state
(:mod:`pansharp_jax.nn.selective_scan`).

Matmul precision (``jax.default_matmul_precision`` around the traced step / fuse call):

=========== ============================ =========================================================
name        JAX precision                float32 matmuls and convs on
=========== ============================ =========================================================
default     the backend's (no context)   GPU: TF32 on Ampere and later; TPU: one bf16 pass
tf32        ``"tensorfloat32"`` (HIGH)   GPU: TF32; TPU: three bf16 passes
highest     ``"highest"`` (HIGHEST)      full float32 everywhere
=========== ============================ =========================================================

It sets the ``precision`` of the float32 ``dot_general`` / ``conv`` ops traced inside it
(bf16 operands are unaffected); on CPU every choice computes float32 and costs the same.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError

__all__ = [
    "COMPUTE_DTYPES",
    "FP32",
    "MATMUL_PRECISIONS",
    "Policy",
    "apply_model",
    "cast_floating",
    "dot_census",
    "format_census",
    "get_policy",
    "policy_from_config",
]

# config.precision -> the compute dtype
COMPUTE_DTYPES: dict[str, Any] = {"fp32": jnp.float32, "bf16": jnp.bfloat16}
# config.matmul_precision -> the value of jax.default_matmul_precision (None: leave JAX's default)
MATMUL_PRECISIONS: dict[str, str | None] = {"default": None, "tf32": "tensorfloat32", "highest": "highest"}

# The Flax layers whose inputs Policy.layers casts (their __call__ computes a matmul / conv).
_FLAX_LINEAR = ("Dense", "DenseGeneral", "Einsum", "Conv", "ConvTranspose", "ConvLocal")


def linear_layers() -> tuple[type, ...]:
    """The module classes :meth:`Policy.layers` casts the inputs of: Flax's linear layers and
    the LoRA layers of :mod:`pansharp_jax.nn.lora` (when their ``dtype`` is None / absent)."""
    from pansharp_jax.nn.lora import LoRAConv, LoRADense

    return (*(getattr(nn, n) for n in _FLAX_LINEAR if hasattr(nn, n)), LoRADense, LoRAConv)


def _is_float(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.floating)


def cast_floating(tree: Any, dtype: Any) -> Any:
    """``tree`` with every floating array leaf cast to ``dtype`` (any pytree).

    Integer, unsigned, boolean and complex leaves, typed PRNG keys and non-array leaves
    are returned unchanged; leaves already of ``dtype`` are not copied.
    """
    dtype = jnp.dtype(dtype)

    def cast(x: Any) -> Any:
        if _is_float(x) and x.dtype != dtype:
            return x.astype(dtype)
        return x

    return jax.tree.map(cast, tree)


@dataclasses.dataclass(frozen=True)
class Policy:
    """A mixed-precision policy (module docstring).

    Attributes:
      precision: ``"fp32"`` or ``"bf16"``: the dtype the network computes in.
      matmul_precision: ``"default"``, ``"tf32"`` or ``"highest"``: float32 matmul / conv precision.
    """

    precision: str = "fp32"
    matmul_precision: str = "default"

    def __post_init__(self) -> None:
        _check("precision", self.precision, COMPUTE_DTYPES)
        _check("matmul_precision", self.matmul_precision, MATMUL_PRECISIONS)

    @property
    def compute_dtype(self) -> Any:
        """``jnp.float32`` or ``jnp.bfloat16``."""
        return COMPUTE_DTYPES[self.precision]

    @property
    def mixed(self) -> bool:
        """Whether the network computes in a lower precision than its float32 parameters."""
        return self.precision != "fp32"

    def cast_to_compute(self, tree: Any) -> Any:
        """Floating leaves of ``tree`` (params, inputs) in the compute dtype; no-op for fp32."""
        return cast_floating(tree, self.compute_dtype) if self.mixed else tree

    def cast_to_output(self, tree: Any) -> Any:
        """Floating leaves of ``tree`` (model outputs, losses, metrics) in float32."""
        return cast_floating(tree, jnp.float32)

    @contextlib.contextmanager
    def matmul_context(self) -> Iterator[None]:
        """``jax.default_matmul_precision`` for :attr:`matmul_precision` (nothing for ``"default"``).

        Use it around tracing (inside a jitted function) or around the first call of a jitted
        function: the setting is part of JAX's trace context and of the jit cache key.
        """
        value = MATMUL_PRECISIONS[self.matmul_precision]
        if value is None:
            yield
        else:
            with jax.default_matmul_precision(value):
                yield

    @contextlib.contextmanager
    def layers(self) -> Iterator[None]:
        """While active, Flax linear layers with ``dtype=None`` get their floating inputs cast
        to the compute dtype (module docstring); nothing for fp32."""
        if not self.mixed:
            yield
            return
        dtype, layers = self.compute_dtype, linear_layers()

        def interceptor(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
            module = context.module
            if context.method_name == "__call__" and isinstance(module, layers) and getattr(module, "dtype", None) is None:
                args, kwargs = cast_floating((tuple(args), dict(kwargs)), dtype)
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(interceptor):
            yield

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """:meth:`matmul_context` and :meth:`layers` together: wrap a model's apply in it."""
        with self.matmul_context(), self.layers():
            yield

    def describe(self) -> str:
        """One line for logs: ``"bf16 compute, fp32 params (matmul precision: default)"``."""
        what = "fp32" if not self.mixed else f"{self.precision} compute, fp32 params"
        return f"{what} (matmul precision: {self.matmul_precision})"


def _check(field: str, value: Any, allowed: Mapping[str, Any]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"{field} must be one of {', '.join(repr(k) for k in allowed)}, got {value!r}")


FP32 = Policy()  # float32 everywhere, JAX's default matmul precision: the trainer's default


def get_policy(precision: str = "fp32", matmul_precision: str = "default", *, prefix: str = "") -> Policy:
    """The :class:`Policy` of two names (case and surrounding spaces ignored).

    ``prefix`` goes before the field names in errors (``"config."``, ``"--"``).

    Raises:
      InputError: an unknown name; the message names the field and the allowed values.
    """
    norm = lambda v: v.strip().lower() if isinstance(v, str) else v  # noqa: E731
    precision, matmul_precision = norm(precision), norm(matmul_precision)
    _check(f"{prefix}precision", precision, COMPUTE_DTYPES)
    _check(f"{prefix}matmul_precision", matmul_precision, MATMUL_PRECISIONS)
    return Policy(precision, matmul_precision)


def policy_from_config(config: Any) -> Policy:
    """The policy of a run config: ``config.precision`` (default ``"fp32"``) and
    ``config.matmul_precision`` (default ``"default"``); absent fields take the defaults.

    Raises:
      InputError: ``config.precision must be one of 'fp32', 'bf16', got 'fp16'`` and alike.
    """
    get = config.get if hasattr(config, "get") else lambda k, d: getattr(config, k, d)
    return get_policy(get("precision", "fp32"), get("matmul_precision", "default"), prefix="config.")


def apply_model(
    module: nn.Module, params: Any, lrms: jax.Array, pan: jax.Array, lms: jax.Array, *, policy: Policy, **kwargs: Any
) -> Any:
    """``module.apply({'params': params}, lrms, pan, lms, train=False, **kwargs)`` under ``policy``.

    The float32 ``params`` and inputs (registry contract: (N, h, w, C), (N, H, W, K),
    (N, H, W, C) on [0, 1]) are cast to the compute dtype, the model runs under
    :meth:`Policy.scope`, and every floating output leaf comes back float32. Pure; jit it with
    ``module`` and ``policy`` static.
    """
    p, (a, b, c) = policy.cast_to_compute(params), policy.cast_to_compute((lrms, pan, lms))
    kwargs.setdefault("train", False)
    with policy.scope():
        out = module.apply({"params": p}, a, b, c, **kwargs)
    return policy.cast_to_output(out)


# ------------------------------------------------------------------------------ dtype census
_CENSUS_PRIMITIVES = ("dot_general", "conv_general_dilated")


def _sub_jaxprs(eqn: Any) -> Iterator[Any]:
    from jax.extend import core as jcore

    for value in eqn.params.values():
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(v, jcore.ClosedJaxpr):
                yield v.jaxpr
            elif isinstance(v, jcore.Jaxpr):
                yield v


def dot_census(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[tuple[str, str, str], int]:
    """Count the matmuls and convolutions of ``fn(*args, **kwargs)`` by operand dtypes.

    Traces ``fn`` (no compile, no run) and walks its jaxpr, including the bodies of
    ``scan``, ``while``, ``cond``, ``remat``, ``custom_vjp`` and nested ``jit``; a loop body
    counts once. Under ``jax.grad`` the backward ops are counted too.

    Returns:
      ``{(primitive, lhs dtype, rhs dtype): count}``, primitive ``"dot_general"`` or
      ``"conv_general_dilated"``, e.g. ``{("conv_general_dilated", "bfloat16", "bfloat16"): 12}``.
    """
    closed = jax.make_jaxpr(fn)(*args, **kwargs)
    counts: collections.Counter[tuple[str, str, str]] = collections.Counter()

    def walk(jaxpr: Any) -> None:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in _CENSUS_PRIMITIVES:
                lhs, rhs = (str(np.dtype(v.aval.dtype)) if hasattr(v.aval, "dtype") else "?" for v in eqn.invars[:2])
                counts[(eqn.primitive.name, lhs, rhs)] += 1
            for sub in _sub_jaxprs(eqn):
                walk(sub)

    walk(closed.jaxpr)
    return dict(sorted(counts.items()))


def format_census(census: Mapping[tuple[str, str, str], int]) -> str:
    """``"dot bf16xbf16 4, conv bf16xbf16 12, conv f32xf32 2"``: :func:`dot_census` in one line."""
    short = {"dot_general": "dot", "conv_general_dilated": "conv"}
    dt = {"bfloat16": "bf16", "float32": "f32", "float16": "f16", "float64": "f64"}
    items = [f"{short[p]} {dt.get(a, a)}x{dt.get(b, b)} {n}" for (p, a, b), n in census.items()]
    return ", ".join(items) or "no matmuls"
