"""Start a run from parts of other runs: ``config.init_from``.

Stage-wise methods are sequences of configs of the one trainer: a pre-training run (an MAE,
a restoration CNN) produces parameters that a later run loads into a sub-tree of its own
model and usually freezes (``config.optim.frozen``). ``init_from`` is a comma-separated
list of ``DST=WORKDIR`` or ``DST=WORKDIR@SRC`` items:

* ``DST``: a ``/``-separated path in this model's params (``prior``, ``body/edsr``);
  empty (``=WORKDIR``) means the whole params tree;
* ``WORKDIR``: a ``pansharp train`` workdir (its best checkpoint, else the latest one);
* ``SRC``: the path of the sub-tree to take from that run's params (default: all of them).

For example ``prior=runs/mae_wv2_real@mae`` copies the MAE run's ``params['mae']`` into
this model's ``params['prior']``. The copied tree must have exactly the structure and
shapes of the sub-tree it replaces (InputError naming the first difference). It is applied
once, on a fresh start (never on resume: the checkpoint already holds those values).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from pansharp_jax.errors import InputError


def parse_init_from(spec: str) -> list[tuple[str, str, str]]:
    """``"DST=WORKDIR[@SRC],..."`` -> [(dst, workdir, src)]; InputError for a malformed item."""
    out = []
    for item in filter(None, (x.strip() for x in str(spec or "").split(","))):
        dst, sep, rest = item.partition("=")
        if not sep or not rest.strip():
            raise InputError(f"init_from takes DST=WORKDIR[@SRC] items, got {item!r}")
        workdir, _, src = rest.partition("@")
        out.append((dst.strip().strip("/"), workdir.strip(), src.strip().strip("/")))
    return out


def subtree(tree: Mapping[str, Any], path: str, what: str) -> Any:
    """``tree`` at the ``/``-separated ``path`` ('' = the tree); InputError naming the missing key."""
    node: Any = tree
    for key in filter(None, path.split("/")):
        if not isinstance(node, Mapping) or key not in node:
            have = ", ".join(sorted(node)) if isinstance(node, Mapping) else type(node).__name__
            raise InputError(f"init_from: {what} has no '{path}' (at '{key}'; it has {have})")
        node = node[key]
    return node


def replace_subtree(tree: Mapping[str, Any], path: str, value: Any) -> Any:
    """A copy of ``tree`` with the sub-tree at ``path`` replaced by ``value``."""
    keys = [k for k in path.split("/") if k]
    if not keys:
        return value
    head, rest = keys[0], "/".join(keys[1:])
    out = dict(tree)
    out[head] = replace_subtree(tree[head], rest, value)
    return out


def check_same_layout(new: Any, old: Any, where: str) -> None:
    """InputError unless ``new`` and ``old`` have the same tree structure and leaf shapes."""
    a = jax.tree_util.tree_flatten_with_path(new)[0]
    b = jax.tree_util.tree_flatten_with_path(old)[0]
    pa = {jax.tree_util.keystr(p): np.shape(x) for p, x in a}
    pb = {jax.tree_util.keystr(p): np.shape(x) for p, x in b}
    if pa.keys() != pb.keys():
        extra, missing = sorted(pa.keys() - pb.keys())[:3], sorted(pb.keys() - pa.keys())[:3]
        raise InputError(f"init_from {where}: the parameter trees differ (only in the source: {extra}; only here: {missing})")
    for k in pb:
        if pa[k] != pb[k]:
            raise InputError(f"init_from {where}: {k} is {pa[k]} in the source and {pb[k]} here")


def load_init_from(params: Mapping[str, Any], spec: str) -> Any:
    """``params`` with every ``init_from`` item's sub-tree copied in (NumPy leaves, dtypes kept)."""
    from pansharp_jax.train.restore import restore_params

    for dst, workdir, src in parse_init_from(spec):
        restored = restore_params(workdir)
        new = subtree(restored.params, src, f"the run in {workdir}")
        old = subtree(params, dst, "this model's params")
        where = f"{dst or '(all)'}={workdir}{'@' + src if src else ''}"
        check_same_layout(new, old, where)
        new = jax.tree.map(lambda n, o: np.asarray(n, dtype=np.asarray(o).dtype), new, old)
        params = replace_subtree(params, dst, new)
    return params


__all__ = ["check_same_layout", "load_init_from", "parse_init_from", "replace_subtree", "subtree"]
