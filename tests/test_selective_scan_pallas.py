"""The fused Pallas selective scan (``method='pallas'``), run in Pallas interpret mode on the CPU.

Values and final states against a NumPy float64 loop, gradients of every input against the
sequential method (itself checked by finite differences in test_selective_scan.py) and by
finite differences here. Shapes are tiny: interpret mode compiles each case for seconds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from pansharp_jax.nn.selective_scan import METHODS, resolve_method, selective_scan
from pansharp_jax.nn.selective_scan_pallas import pick_block_d

TOL = 1e-5
ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0")


from test_selective_scan import _inputs  # noqa: E402  (the same random inputs as the scan tests)


def _numpy_scan(u, delta, A, B, C, D, z, delta_bias, softplus, h0):
    """The recurrence as a float64 loop over time (vectorised over batch, channel and state)."""
    u, delta, A, B, C = (np.asarray(a, np.float64) for a in (u, delta, A, B, C))
    b, L, d = u.shape
    h = np.zeros((b, d, A.shape[1])) if h0 is None else np.array(h0, np.float64)
    y = np.zeros((b, L, d))
    for t in range(L):
        dt = delta[:, t] + (0.0 if delta_bias is None else np.asarray(delta_bias, np.float64))
        if softplus:
            dt = np.log1p(np.exp(dt))
        h = np.exp(dt[..., None] * A) * h + (dt * u[:, t])[..., None] * B[:, t, None, :]
        y[:, t] = np.sum(h * C[:, t, None, :], axis=-1)
        if D is not None:
            y[:, t] += np.asarray(D, np.float64) * u[:, t]
        if z is not None:
            zz = np.asarray(z[:, t], np.float64)
            y[:, t] *= zz / (1.0 + np.exp(-zz))
    return y, h


# (b, L, D, N, chunk, use D, z, delta_bias, softplus, h0). L is never a multiple of the chunk
# or of the kernels' 4-token unroll; D = 6 is padded to a block of 8; D = 16 runs two blocks.
CASES = [
    (2, 13, 6, 3, 5, True, True, True, True, True),
    (1, 7, 4, 2, 3, False, False, False, True, False),
    (2, 33, 16, 4, 128, True, False, True, False, True),
    (1, 9, 8, 2, 4, False, True, False, False, False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}L{}D{}N{}c{}".format(*c[:5]))
def test_pallas_matches_numpy_loop(case):
    b, L, d, n, chunk, use_D, use_z, use_bias, softplus, use_h0 = case
    x = _inputs(L * d, b, L, d, n)
    if not softplus:  # keep the raw step positive so the recurrence stays stable
        x["delta"] = np.abs(x["delta"]) + 0.1
        x["delta_bias"] = np.abs(x["delta_bias"])
    kw = dict(
        D=x["D"] if use_D else None,
        z=x["z"] if use_z else None,
        delta_bias=x["delta_bias"] if use_bias else None,
    )
    h0 = x["h0"] if use_h0 else None
    y_ref, h_ref = _numpy_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], softplus=softplus, h0=h0, **kw)
    fn = jax.jit(lambda *a: selective_scan(*a, delta_softplus=softplus, h0=h0, method="pallas", chunk=chunk, return_state=True, **kw))
    y, h = fn(x["u"], x["delta"], x["A"], x["B"], x["C"])
    assert y.shape == y_ref.shape and h.shape == h_ref.shape and y.dtype == jnp.float32
    np.testing.assert_allclose(y, y_ref, atol=TOL, rtol=TOL)
    np.testing.assert_allclose(h, h_ref, atol=TOL, rtol=TOL)


def _loss(method, chunk, softplus=True, with_z=True):
    def loss(u, delta, A, B, C, D, z, delta_bias, h0):
        y, h = selective_scan(
            u, delta, A, B, C, D, z if with_z else None, delta_bias, softplus,
            h0=h0, method=method, chunk=chunk, return_state=True,
        )  # fmt: skip
        return jnp.sum(jnp.sin(y)) + jnp.sum(h * h)

    return loss


@pytest.mark.parametrize("softplus, with_z", [(True, True), (False, False)])
def test_pallas_gradients_match_sequential(softplus, with_z):
    x = _inputs(3, b=2, L=11, d=6, n=3)
    if not softplus:
        x["delta"] = np.abs(x["delta"]) + 0.1
        x["delta_bias"] = np.abs(x["delta_bias"])
    args = [jnp.asarray(x[k]) for k in ARGS]
    grads = {
        m: jax.jit(jax.grad(_loss(m, 4, softplus, with_z), argnums=tuple(range(9))))(*args)
        for m in ("sequential", "pallas")
    }
    for name, ref, got in zip(ARGS, grads["sequential"], grads["pallas"]):
        assert got.shape == ref.shape and got.dtype == ref.dtype, name
        np.testing.assert_allclose(got, ref, atol=TOL, rtol=TOL, err_msg=name)
        if name == "z" and not with_z:
            continue
        assert np.abs(np.asarray(ref)).max() > 1e-3, name  # the comparison is not vacuous


def test_pallas_check_grads_float64():
    # tiny shape, two chunks (the second partial), D padded 3 -> 8, N padded 3 -> 4
    x = _inputs(9, b=1, L=6, d=3, n=3)
    with jax.enable_x64(True):
        args = [jnp.asarray(x[k], jnp.float64) for k in ARGS]
        check_grads(jax.jit(_loss("pallas", 4)), args, order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_pallas_bfloat16_inputs_keep_a_float32_state():
    # every array bf16 but h0: the state and final state are float32, y is bf16; the
    # reference is the float64 loop on the same (bf16-rounded) values
    x = _inputs(4, b=1, L=16, d=8, n=4)
    bf = {k: jnp.asarray(x[k], jnp.bfloat16) for k in ("u", "delta", "z", "B", "C", "A", "D", "delta_bias")}
    ref_in = {k: np.asarray(v.astype(jnp.float32)) for k, v in bf.items()}
    y_ref, h_ref = _numpy_scan(ref_in["u"], ref_in["delta"], ref_in["A"], ref_in["B"], ref_in["C"], ref_in["D"],
                               ref_in["z"], ref_in["delta_bias"], True, x["h0"])  # fmt: skip
    y, h = selective_scan(bf["u"], bf["delta"], bf["A"], bf["B"], bf["C"], bf["D"], bf["z"], bf["delta_bias"],
                          h0=x["h0"], method="pallas", chunk=8, return_state=True)  # fmt: skip
    assert y.dtype == jnp.bfloat16 and h.dtype == jnp.float32
    np.testing.assert_allclose(h, h_ref, atol=TOL, rtol=TOL)
    np.testing.assert_allclose(np.asarray(y, np.float32), y_ref, atol=1e-2, rtol=1e-2)


def test_auto_and_block_choice():
    assert "pallas" in METHODS
    assert resolve_method("auto", "gpu") == "pallas" and resolve_method("auto", "cuda") == "pallas"
    assert resolve_method("auto", "cpu") == "sequential" and resolve_method("auto", "tpu") == "associative"
    assert resolve_method("chunked", "gpu") == "chunked"
    # channel blocks are powers of two in 8..64 that divide D when D is a multiple of 8
    for b, d in ((32, 32), (32, 96), (1, 64), (1, 6), (1, 12), (4, 1024)):
        bd = pick_block_d(b, d)
        assert 8 <= bd <= 64 and bd & (bd - 1) == 0 and (d % 8 or d % bd == 0), (b, d, bd)
