"""The train state: parameters, optimizer state, step and the run's base PRNG key.

``rng`` is a raw ``uint32[2]`` key (``jax.random.PRNGKey``) so that it checkpoints as a
plain array. The key of step ``s`` is ``fold_in(rng, s)`` (:func:`step_rng`): it depends
only on the seed and the step, so a resumed run draws exactly the keys an uninterrupted
run draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct


@struct.dataclass
class TrainState:
    """Everything a training step changes, plus the static ``apply_fn`` and ``tx``.

    Attributes:
      step: int32 scalar, number of optimizer updates done.
      params: the model parameters (a pytree).
      opt_state: the optax state.
      rng: the run's base key, uint32[2]; constant during training.
      apply_fn: ``module.apply`` (static).
      tx: the optax transformation (static).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    apply_fn: Callable[..., Any] = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(
        cls, *, apply_fn: Callable[..., Any], params: Any, tx: optax.GradientTransformation, rng: jax.Array
    ) -> TrainState:
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            rng=jnp.asarray(rng, jnp.uint32),
            apply_fn=apply_fn,
            tx=tx,
        )

    def apply_gradients(self, grads: Any) -> TrainState:
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates), opt_state=opt_state)

    def arrays(self) -> dict[str, Any]:
        """The checkpointed part: ``{"step", "params", "opt_state", "rng"}``."""
        return {"step": self.step, "params": self.params, "opt_state": self.opt_state, "rng": self.rng}

    def with_arrays(self, tree: dict[str, Any]) -> TrainState:
        """This state with the arrays of :meth:`arrays` replaced (after a restore)."""
        return self.replace(step=tree["step"], params=tree["params"], opt_state=tree["opt_state"], rng=tree["rng"])


def step_rng(base_key: Any, step: int) -> np.ndarray:
    """The key of the update that takes step ``step`` to ``step + 1``: ``fold_in(base_key, step)``.

    Computed on the host and returned as NumPy, so that it can be fed to a jitted step
    spanning several processes.
    """
    return np.asarray(jax.random.fold_in(np.asarray(base_key, np.uint32), int(step)))
