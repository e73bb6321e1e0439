"""Small synthetic data and tiny configs for tests, smoke runs and examples.

:func:`write_synthetic_panc` writes a PanCollection-format ``.h5`` (``gt``, ``ms``,
``lms``, ``pan``, N x C x H x W, in DN) whose PAN carries spatial detail that the MS lacks,
so that a fusion network has something to learn; :func:`tiny_config` is a training config
for a FusionNet a few hundred parameters wide on such files.
"""

from __future__ import annotations

import os
from pathlib import Path

import ml_collections
import numpy as np


def synthetic_samples(
    n: int, *, size: int = 16, bands: int = 4, ratio: int = 4, seed: int = 0
) -> dict[str, np.ndarray]:
    """``{"gt", "lrms", "lms", "pan"}`` NHWC float64 on [0, 1]: smooth spectra + shared detail."""
    from pansharp_jax.data.pipeline import upsample_lms

    rng = np.random.default_rng(seed)
    low = rng.random((n, size // ratio, size // ratio, bands))
    low = np.repeat(np.repeat(low, ratio, axis=1), ratio, axis=2)
    detail = rng.standard_normal((n, size, size, 1))
    gains = rng.uniform(0.8, 1.2, bands)
    gt = np.clip(0.3 + 0.4 * low + 0.08 * detail * gains, 0.01, 0.99)
    lrms = gt.reshape(n, size // ratio, ratio, size // ratio, ratio, bands).mean(axis=(2, 4))
    lms = np.clip(upsample_lms(lrms, ratio).astype(np.float64), 0.0, 1.0)
    pan = np.clip(gt.mean(axis=-1, keepdims=True) + 0.005 * rng.standard_normal((n, size, size, 1)), 0.0, 1.0)
    return {"gt": gt, "lrms": lrms, "lms": lms, "pan": pan}


def write_synthetic_panc(
    path: str | os.PathLike[str], n: int, *, size: int = 16, bands: int = 4, seed: int = 0, scale: float = 2047.0
) -> Path:
    """Write a PanCollection-format ``.h5`` with ``n`` synthetic samples (values in DN)."""
    import h5py

    s = synthetic_samples(n, size=size, bands=bands, seed=seed)
    path = Path(path)
    with h5py.File(path, "w") as f:
        for key, role in (("gt", "gt"), ("ms", "lrms"), ("lms", "lms"), ("pan", "pan")):
            f.create_dataset(key, data=(s[role] * scale).transpose(0, 3, 1, 2), chunks=True)
    return path


def tiny_config(
    train: str, val: str = "", *, steps: int = 20, batch_size: int = 8, bands: int = 4
) -> ml_collections.ConfigDict:
    """A training config for a tiny FusionNet (4 channels, 1 residual block) on PanCollection files."""
    from pansharp_jax.models import registry

    path = Path(__file__).resolve().parents[2] / "configs" / "default.py"
    if path.is_file():
        from pansharp_jax.train.cli_args import load_config

        c = load_config(path)
    else:  # installed without the repository's configs/
        raise FileNotFoundError("configs/default.py not found next to the package")
    c.model = registry.default_config("fusionnet")
    c.model.bands, c.model.channels, c.model.num_res_blocks = bands, 4, 1
    c.data.kind, c.data.train, c.data.val = "panc", str(train), str(val)
    c.steps, c.batch_size = steps, batch_size
    c.optim.lr = 3e-2
    c.log_every = 1
    c.eval_every = 0
    c.eval.batch_size = 4
    c.eval.block = 16
    c.checkpoint.every = 0
    c.checkpoint.async_save = False
    c.logging.enabled = False
    c.logging.console = False
    return c
