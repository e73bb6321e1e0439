"""Pixel losses on the [0, 1] scale, averaged over every pixel, band and sample."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from pansharp_jax.errors import InputError


def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean absolute error."""
    return jnp.mean(jnp.abs(pred - target))


def l2(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error (PyTorch ``MSELoss``)."""
    return jnp.mean(jnp.square(pred - target))


LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {"l1": l1, "l2": l2, "mse": l2, "mae": l1}


def get_loss(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The loss called ``name`` (l1, l2; aliases mae, mse)."""
    key = str(name).lower()
    if key not in LOSSES:
        raise InputError(f"unknown loss {name!r}: use l1 or l2")
    return LOSSES[key]
