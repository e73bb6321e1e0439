"""Optimizer and learning-rate schedule from ``config.optim``.

Fields: ``name`` ('adam' | 'adamw' | 'sgd'), ``lr``, ``schedule`` ('constant' |
'cosine' | 'step'), ``warmup_steps``, ``decay_every`` / ``decay_factor`` (step schedule:
multiply by ``decay_factor`` every ``decay_every`` steps), ``min_lr_ratio`` (cosine
floor), ``weight_decay`` (decoupled, AdamW-style; 0 = off), ``grad_clip`` (global norm;
0 = off), ``b1``, ``b2``, ``eps``, ``momentum`` (sgd), ``frozen`` (parameter paths that
never change: comma-separated (or a list of) ``/``-separated prefixes of the params tree, e.g. ``["prior"]`` or
``["body/edsr"]``; their updates are zero through ``optax.multi_transform``, so frozen
params stay bit-identical).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optax

from pansharp_jax.errors import InputError


def make_schedule(optim: Mapping[str, Any], total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the step."""
    lr = float(optim["lr"])
    kind = str(optim.get("schedule", "constant"))
    warmup = int(optim.get("warmup_steps", 0))
    if kind == "constant":
        main: optax.Schedule = optax.constant_schedule(lr)
    elif kind == "cosine":
        main = optax.cosine_decay_schedule(
            lr, max(1, total_steps - warmup), alpha=float(optim.get("min_lr_ratio", 0.0))
        )
    elif kind == "step":
        every = int(optim.get("decay_every", 0))
        if every <= 0:
            raise InputError("optim.schedule='step' needs optim.decay_every > 0")
        main = optax.exponential_decay(lr, every, float(optim.get("decay_factor", 0.5)), staircase=True)
    else:
        raise InputError(f"unknown optim.schedule {kind!r}: use constant, cosine or step")
    if warmup > 0:
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
    return main


def make_optimizer(optim: Mapping[str, Any], total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optax transformation, schedule) for ``config.optim``."""
    schedule = make_schedule(optim, total_steps)
    name = str(optim.get("name", "adam"))
    wd = float(optim.get("weight_decay", 0.0))
    if name in ("adam", "adamw"):
        b1, b2, eps = float(optim.get("b1", 0.9)), float(optim.get("b2", 0.999)), float(optim.get("eps", 1e-8))
        if wd > 0 or name == "adamw":
            tx = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd)
        else:
            tx = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
    elif name == "sgd":
        tx = optax.sgd(schedule, momentum=float(optim.get("momentum", 0.9)) or None)
        if wd > 0:
            tx = optax.chain(optax.add_decayed_weights(wd), tx)
    else:
        raise InputError(f"unknown optim.name {name!r}: use adam, adamw or sgd")
    clip = float(optim.get("grad_clip", 0.0))
    if clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)
    spec = optim.get("frozen", None) or ()
    frozen = tuple(f.strip().strip("/") for f in (spec.split(",") if isinstance(spec, str) else spec) if f.strip())
    if frozen:
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, lambda params: freeze_labels(params, frozen))
    return tx, schedule


def freeze_labels(params: Any, frozen: tuple[str, ...]) -> Any:
    """The params tree with ``"frozen"`` at leaves under any of the ``frozen`` path prefixes,
    ``"train"`` elsewhere. InputError when a prefix matches no parameter (a typo would
    otherwise train everything silently)."""
    import jax

    used: set[str] = set()

    def label(path: Any, _: Any) -> str:
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        for f in frozen:
            if name == f or name.startswith(f + "/"):
                used.add(f)
                return "frozen"
        return "train"

    labels = jax.tree_util.tree_map_with_path(label, params)
    missing = [f for f in frozen if f not in used]
    if missing:
        raise InputError(f"optim.frozen names no parameters: {', '.join(missing)}")
    return labels
