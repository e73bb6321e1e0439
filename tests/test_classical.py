"""The shared contract of the classical methods: registry, batching, jit, input errors, EXP.

Per-method correctness (golden toolbox outputs, NumPy references) lives in
test_classical_cs.py, test_classical_mra.py and test_classical_bdsd_pracs.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io as sio

from pansharp_jax import classical
from pansharp_jax.errors import InputError


def _pair(seed: int = 0, batch: tuple[int, ...] = (), c: int = 4, h: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lrms = rng.uniform(0.05, 0.6, size=(*batch, h, h, c))
    pan = rng.uniform(0.05, 0.6, size=(*batch, 4 * h, 4 * h, 1))
    return lrms, pan


def test_registry_names() -> None:
    assert set(classical.METHODS) == set(classical.TOOLBOX_NAMES)
    assert len(classical.METHODS) == 12  # the toolbox's 11 + guarded HPM
    for key, fn in classical.METHODS.items():
        assert callable(fn) and fn.__name__ == key


def test_exp_equals_scipy_polyphase_reference() -> None:
    """EXP on a constant image is that constant (the 23-tap filter has unit DC gain per phase)."""
    lrms = np.full((8, 8, 3), 0.37)
    pan = np.zeros((32, 32, 1))
    with jax.enable_x64(True):
        out = np.asarray(classical.exp(None, lrms, pan, ratio=4))
    np.testing.assert_allclose(out, 0.37, atol=1e-12)


def test_exp_equals_toolbox(data_dir) -> None:
    mat = sio.loadmat(data_dir / "rr" / "wv3_cdif.mat")
    golden = sio.loadmat(data_dir / "golden" / "wv3_cdif_EXP.mat")["I_F"]
    with jax.enable_x64(True):
        out = np.asarray(classical.exp(None, mat["lrms"] * 2047.0, mat["pan"] * 2047.0, sensor="WV3", ratio=4))
    assert np.abs(out - golden).max() <= 1e-9


@pytest.mark.parametrize("name", sorted(classical.METHODS))
def test_batched_equals_per_image_and_hwc_pan(name: str) -> None:
    fuse = classical.METHODS[name]
    lrms, pan = _pair(1, batch=(2,), h=32)
    with jax.enable_x64(True):
        both = np.asarray(fuse(None, lrms, pan, sensor="QB", ratio=4))
        one = np.asarray(fuse(None, lrms[1], pan[1, ..., 0], sensor="QB", ratio=4))  # (H, W) PAN accepted
    assert both.shape == (2, 128, 128, 4) and both.dtype == np.float64
    # two separately compiled float64 programs: PRACS's regressions round differently in the last
    # bits (1.6e-10 relative at one pixel with LLVM's optimisations off, as the suite compiles)
    np.testing.assert_allclose(both[1], one, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(classical.METHODS))
def test_float32_finite_and_vmappable(name: str) -> None:
    fuse = classical.METHODS[name]
    lrms, pan = _pair(2, batch=(3,), h=32)
    out = jax.vmap(lambda a, b: fuse(None, a, b, sensor="QB", ratio=4))(
        jnp.asarray(lrms, jnp.float32), jnp.asarray(pan, jnp.float32)
    )
    assert out.dtype == jnp.float32 and out.shape == (3, 128, 128, 4)
    assert bool(jnp.isfinite(out).all())


def test_errors_name_the_problem() -> None:
    lrms, pan = _pair()
    fuse = classical.METHODS["gsa"]
    with pytest.raises(InputError, match="multiple|ratio"):
        fuse(None, lrms, pan[:60, :60], ratio=4)
    with pytest.raises(InputError, match="1 band"):
        fuse(None, lrms, np.repeat(pan, 2, axis=-1), ratio=4)
    with pytest.raises(InputError, match="params=None"):
        fuse({"w": 1}, lrms, pan)
    with pytest.raises(InputError, match="lrms must be"):
        fuse(None, lrms[..., 0, 0], pan)
    with pytest.raises(InputError, match="batch"):
        fuse(None, np.stack([lrms, lrms]), np.stack([pan, pan, pan]))
    with pytest.raises(InputError, match="wrong band count"):
        fuse(None, lrms, pan, sensor="WV3", ratio=4)
