"""One training update and one evaluation forward pass, jitted over the device mesh.

``train_step(state, batch, rng) -> (state, metrics)`` is the pure function; the trainer
uses :func:`make_train_step`, its jitted form with the state replicated and the batch
split along ``'data'`` (the gradient all-reduce is inserted by XLA).

Models with a k-means cluster cache (CANNet, :mod:`pansharp_jax.train.cluster_cache`) use
:func:`cluster_train_step` / :func:`make_cluster_train_step` instead: the same update, with
the cached cluster indices fed in and/or the fresh ones returned, one jitted function per
cache mode.

Mixed precision: every step takes a :class:`~pansharp_jax.train.precision.Policy`
(``policy=``, default float32). With ``bf16`` the float32 parameters are cast to bf16 inside
the differentiated function (the gradients and the optimizer state stay float32), the
network inputs are cast to bf16, the model runs under :meth:`Policy.scope` (bf16 linear
layers, the matmul precision), and its output is cast back to float32 before the loss; the
loss and the metrics are float32. ``batch['gt']`` stays float32 (it is the loss target).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from pansharp_jax.train import losses, parallel
from pansharp_jax.train.precision import FP32, Policy
from pansharp_jax.train.state import TrainState

Metrics = dict[str, jax.Array]

# The batch entries the network sees as inputs (cast to the compute dtype); 'gt' is the target.
INPUT_KEYS = ("lrms", "pan", "lms")


def compute_batch(batch: dict[str, jax.Array], policy: Policy) -> dict[str, jax.Array]:
    """``batch`` with its network inputs (:data:`INPUT_KEYS`) in the policy's compute dtype;
    ``gt`` and any other entry unchanged (the same dict for float32)."""
    if not policy.mixed:
        return batch
    return {k: policy.cast_to_compute(v) if k in INPUT_KEYS else v for k, v in batch.items()}


def forward(
    state: TrainState,
    params: Any,
    batch: dict[str, jax.Array],
    *,
    train: bool,
    rng: jax.Array | None = None,
    **apply_kwargs: Any,
) -> Any:
    """The model's fused image for ``batch`` (registry contract: lrms, pan, lms, train).

    ``apply_kwargs`` go to ``apply`` as they are (e.g. ``mutable=['intermediates']``, which makes
    it return ``(fused, variables)``, or a model's own keyword inputs such as CANNet's cached
    ``kmeans_indices``).
    """
    rngs = {"dropout": rng} if rng is not None else None
    return state.apply_fn(
        {"params": params}, batch["lrms"], batch["pan"], batch["lms"], train=train, rngs=rngs, **apply_kwargs
    )


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    rng: jax.Array,
    *,
    loss: str | losses.LossFn = "l1",
    schedule: optax.Schedule | None = None,
    own_objective: bool = False,
    policy: Policy = FP32,
) -> tuple[TrainState, Metrics]:
    """One optimizer update on ``batch`` with key ``rng`` (dropout, masks, noise...).

    ``own_objective``: the model defines ``training_loss(batch, rng) -> (loss, metrics)``
    (self-supervised pre-training, generative models, losses with extra terms; see
    :mod:`pansharp_jax.models.registry`), used instead of ``loss(fused, gt)``; its metrics
    (scalars) join the step's.

    ``policy``: the compute precision and matmul precision (module docstring); ``state.params``
    and ``state.opt_state`` stay as they are (float32) whatever the policy.

    Returns the new state and ``{"loss", "grad_norm", "param_norm"[, "lr"], ...}`` (scalars;
    ``lr`` is the rate used for this update).
    """
    loss_fn = loss if callable(loss) else losses.get_loss(loss)
    inputs = compute_batch(batch, policy)

    def objective(params: Any) -> tuple[jax.Array, Metrics]:
        params = policy.cast_to_compute(params)  # inside the differentiated function: float32 gradients
        with policy.scope():
            if own_objective:
                value, aux = state.apply_fn({"params": params}, inputs, rng, method="training_loss", rngs={"dropout": rng})
                return value.astype(jnp.float32), policy.cast_to_output(dict(aux))
            fused = forward(state, params, inputs, train=True, rng=rng)
        return loss_fn(fused.astype(jnp.float32), batch["gt"]), {}

    with policy.matmul_context():  # the backward pass's matmuls too
        (value, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    new_state, metrics = _apply(state, value, grads, schedule)
    metrics.update({k: jnp.asarray(v, jnp.float32) for k, v in aux.items()})
    return new_state, metrics


def _apply(
    state: TrainState, value: jax.Array, grads: Any, schedule: optax.Schedule | None
) -> tuple[TrainState, Metrics]:
    """The optimizer update and the step's metrics (shared by every train-step variant)."""
    metrics = {"loss": value, "grad_norm": optax.tree.norm(grads)}
    if schedule is not None:
        metrics["lr"] = jnp.asarray(schedule(state.step), jnp.float32)
    new_state = state.apply_gradients(grads)
    metrics["param_norm"] = optax.tree.norm(new_state.params)
    return new_state, metrics


ClusterIndices = dict[str, jax.Array]
CLUSTER_MODES = ("init", "update", "ready")


def cluster_train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    rng: jax.Array,
    cached: Mapping[str, jax.Array] | None,
    *,
    mode: str,
    extract: Callable[[Any], ClusterIndices],
    loss: str | losses.LossFn = "l1",
    schedule: optax.Schedule | None = None,
    policy: Policy = FP32,
) -> tuple[TrainState, Metrics, ClusterIndices | None]:
    """:func:`train_step` of a model that takes cached k-means indices (CANNet's cache).

    Args:
      cached: ``{layer: (B, P) int}`` cluster indices of the batch's samples, or None.
      mode: ``"init"`` (fresh k-means; ``cached`` must be None), ``"update"`` (k-means
        warm-started from ``cached``'s cluster centres) or ``"ready"`` (``cached`` is the
        clustering; no k-means runs).
      extract: the model's ``'intermediates'`` -> ``{layer: (B, P)}`` sown k-means indices
        (e.g. :func:`pansharp_jax.models.canconv.kmeans_indices_from`).
      policy: as for :func:`train_step`.
    Returns:
      ``(state, metrics, indices)``: the update of :func:`train_step` and, for ``"init"`` and
      ``"update"``, the k-means indices this forward computed (None for ``"ready"``).
    """
    if mode not in CLUSTER_MODES:
        raise ValueError(f"mode must be one of {CLUSTER_MODES}, got {mode!r}")
    if (cached is None) != (mode == "init"):
        raise ValueError(f"mode {mode!r} {'takes no' if mode == 'init' else 'needs'} cached indices")
    loss_fn = loss if callable(loss) else losses.get_loss(loss)
    kwargs: dict[str, Any] = {} if cached is None else {"kmeans_indices": dict(cached), "kmeans_mode": mode}
    collect = mode != "ready"
    inputs = compute_batch(batch, policy)

    def objective(params: Any) -> tuple[jax.Array, ClusterIndices | None]:
        params = policy.cast_to_compute(params)
        with policy.scope():
            out = forward(state, params, inputs, train=True, rng=rng, mutable=["intermediates"] if collect else False, **kwargs)
        fused, sown = (out[0], extract(out[1]["intermediates"])) if collect else (out, None)
        return loss_fn(fused.astype(jnp.float32), batch["gt"]), sown

    with policy.matmul_context():
        (value, sown), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    new_state, metrics = _apply(state, value, grads, schedule)
    return new_state, metrics, sown


EVAL_KEY = 20_240_601  # the fixed key of models' eval_output (masks, sampler noise): the same every evaluation


def eval_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    loss: str | losses.LossFn = "l1",
    own_output: bool = False,
    policy: Policy = FP32,
) -> tuple[jax.Array, jax.Array]:
    """(images scored against the GT, per-sample loss) for an evaluation batch.

    ``own_output``: the model defines ``eval_output(batch, rng) -> (N, H, W, C)`` (e.g. an
    MAE's reconstruction of masked GT patches, a sampler's mean), called with a fixed key.
    ``policy``: the network runs as in training (:func:`train_step`); the images returned and
    the loss are float32.
    """
    params, inputs = policy.cast_to_compute(state.params), compute_batch(batch, policy)
    with policy.scope():
        if own_output:
            key = jax.random.PRNGKey(EVAL_KEY)
            fused = state.apply_fn({"params": params}, inputs, key, method="eval_output")
        else:
            fused = forward(state, params, inputs, train=False)
    fused = fused.astype(jnp.float32)
    fn = loss if callable(loss) else losses.get_loss(loss)
    per_sample = jax.vmap(fn)(fused, batch["gt"]) if "gt" in batch else jnp.zeros(fused.shape[0])
    return fused, per_sample


def make_train_step(
    mesh: Mesh,
    *,
    loss: str | losses.LossFn = "l1",
    schedule: optax.Schedule | None = None,
    donate: bool = True,
    own_objective: bool = False,
    policy: Policy = FP32,
) -> Callable[..., tuple[TrainState, Metrics]]:
    """``train_step`` jitted over ``mesh``: state and rng replicated, batch split on ``'data'``."""
    rep, dat = parallel.replicated(mesh), parallel.data_sharding(mesh)

    def fn(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[TrainState, Metrics]:
        return train_step(state, batch, rng, loss=loss, schedule=schedule, own_objective=own_objective, policy=policy)

    return jax.jit(fn, in_shardings=(rep, dat, rep), out_shardings=(rep, rep), donate_argnums=(0,) if donate else ())


def make_cluster_train_step(
    mesh: Mesh,
    mode: str,
    *,
    extract: Callable[[Any], ClusterIndices],
    loss: str | losses.LossFn = "l1",
    schedule: optax.Schedule | None = None,
    donate: bool = True,
    policy: Policy = FP32,
) -> Callable[..., Any]:
    """:func:`cluster_train_step` for one ``mode`` (static), jitted over ``mesh``.

    Signatures: ``"init"``: ``(state, batch, rng) -> (state, metrics, indices)``;
    ``"update"``: ``(state, batch, rng, cached) -> (state, metrics, indices)``; ``"ready"``:
    ``(state, batch, rng, cached) -> (state, metrics)``. The state and rng are replicated;
    the batch, ``cached`` and the returned ``indices`` are split on ``'data'`` like the batch.
    """
    if mode not in CLUSTER_MODES:
        raise ValueError(f"mode must be one of {CLUSTER_MODES}, got {mode!r}")
    rep, dat = parallel.replicated(mesh), parallel.data_sharding(mesh)
    kw = dict(mode=mode, extract=extract, loss=loss, schedule=schedule, policy=policy)
    takes_cached, returns_indices = mode != "init", mode != "ready"

    def step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *cached: ClusterIndices) -> Any:
        out = cluster_train_step(state, batch, rng, cached[0] if cached else None, **kw)
        return out if returns_indices else out[:2]

    return jax.jit(
        step,
        in_shardings=(rep, dat, rep) + ((dat,) if takes_cached else ()),
        out_shardings=(rep, rep) + ((dat,) if returns_indices else ()),
        donate_argnums=(0,) if donate else (),
    )


def make_eval_step(
    mesh: Mesh, *, loss: str | losses.LossFn = "l1", own_output: bool = False, policy: Policy = FP32
) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """``eval_step`` jitted over ``mesh``: outputs stay split on ``'data'``."""
    rep, dat = parallel.replicated(mesh), parallel.data_sharding(mesh)

    def fn(state: TrainState, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        return eval_step(state, batch, loss=loss, own_output=own_output, policy=policy)

    return jax.jit(fn, in_shardings=(rep, dat), out_shardings=(dat, dat))
