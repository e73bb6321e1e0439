"""One training update and one evaluation forward pass, jitted over the device mesh.

``train_step(state, batch, rng) -> (state, metrics)`` is the pure function; the trainer
uses :func:`make_train_step`, its jitted form with the state replicated and the batch
split along ``'data'`` (the gradient all-reduce is inserted by XLA).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from pansharp_jax.train import losses, parallel
from pansharp_jax.train.state import TrainState

Metrics = dict[str, jax.Array]


def forward(
    state: TrainState, params: Any, batch: dict[str, jax.Array], *, train: bool, rng: jax.Array | None = None
) -> jax.Array:
    """The model's fused image for ``batch`` (registry contract: lrms, pan, lms, train)."""
    rngs = {"dropout": rng} if rng is not None else None
    return state.apply_fn({"params": params}, batch["lrms"], batch["pan"], batch["lms"], train=train, rngs=rngs)


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    rng: jax.Array,
    *,
    loss: str | losses.LossFn = "l1",
    schedule: optax.Schedule | None = None,
) -> tuple[TrainState, Metrics]:
    """One optimizer update on ``batch`` with key ``rng`` (dropout etc.).

    Returns the new state and ``{"loss", "grad_norm", "param_norm"[, "lr"]}`` (scalars;
    ``lr`` is the rate used for this update).
    """
    loss_fn = loss if callable(loss) else losses.get_loss(loss)

    def objective(params: Any) -> jax.Array:
        fused = forward(state, params, batch, train=True, rng=rng)
        return loss_fn(fused.astype(jnp.float32), batch["gt"])

    value, grads = jax.value_and_grad(objective)(state.params)
    metrics = {"loss": value, "grad_norm": optax.tree.norm(grads)}
    if schedule is not None:
        metrics["lr"] = jnp.asarray(schedule(state.step), jnp.float32)
    new_state = state.apply_gradients(grads)
    metrics["param_norm"] = optax.tree.norm(new_state.params)
    return new_state, metrics


def eval_step(
    state: TrainState, batch: dict[str, jax.Array], *, loss: str | losses.LossFn = "l1"
) -> tuple[jax.Array, jax.Array]:
    """(fused images, per-sample loss) for an evaluation batch."""
    fused = forward(state, state.params, batch, train=False).astype(jnp.float32)
    fn = loss if callable(loss) else losses.get_loss(loss)
    per_sample = jax.vmap(fn)(fused, batch["gt"]) if "gt" in batch else jnp.zeros(fused.shape[0])
    return fused, per_sample


def make_train_step(
    mesh: Mesh, *, loss: str | losses.LossFn = "l1", schedule: optax.Schedule | None = None, donate: bool = True
) -> Callable[..., tuple[TrainState, Metrics]]:
    """``train_step`` jitted over ``mesh``: state and rng replicated, batch split on ``'data'``."""
    rep, dat = parallel.replicated(mesh), parallel.data_sharding(mesh)

    def fn(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[TrainState, Metrics]:
        return train_step(state, batch, rng, loss=loss, schedule=schedule)

    return jax.jit(fn, in_shardings=(rep, dat, rep), out_shardings=(rep, rep), donate_argnums=(0,) if donate else ())


def make_eval_step(mesh: Mesh, *, loss: str | losses.LossFn = "l1") -> Callable[..., tuple[jax.Array, jax.Array]]:
    """``eval_step`` jitted over ``mesh``: outputs stay split on ``'data'``."""
    rep, dat = parallel.replicated(mesh), parallel.data_sharding(mesh)

    def fn(state: TrainState, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        return eval_step(state, batch, loss=loss)

    return jax.jit(fn, in_shardings=(rep, dat), out_shardings=(dat, dat))
