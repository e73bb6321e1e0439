"""Every config in configs/ loads, takes overrides, and builds its registered model."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_config

# apla_*.py configure the video fine-tuner (pansharp video-train), not the pan-sharpening trainer
CONFIGS = sorted(
    p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.py") if p.stem != "default" and not p.stem.startswith("apla_")
)


def test_every_registered_model_has_a_config() -> None:
    methods = {load_config(p).model.name for p in CONFIGS}
    assert set(registry.names()) <= methods, set(registry.names()) - methods


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_builds(path: Path) -> None:
    c = load_config(f"{path}:smoke", ["--config.optim.lr=0.125"])
    assert c.optim.lr == 0.125 and c.steps == 20
    assert c.batch_size > 0 and c.model.bands >= 1
    module = registry.build_model(c.model)
    b, h, r = 1, 16, int(c.data.ratio)
    guide = int(c.model.get("guide_bands", 1))  # PAN (1) or an HR-MSI guide (MHIF)
    lrms = jax.ShapeDtypeStruct((b, h, h, c.model.bands), jnp.float32)
    pan = jax.ShapeDtypeStruct((b, r * h, r * h, guide), jnp.float32)
    lms = jax.ShapeDtypeStruct((b, r * h, r * h, c.model.bands), jnp.float32)
    out = jax.eval_shape(lambda a, p, m: module.init_with_output(jax.random.key(0), a, p, m)[0], lrms, pan, lms)
    assert out.shape == (b, r * h, r * h, c.model.bands)
    with pytest.raises(InputError):
        load_config(path, ["--config.optim.no_such_field=1"])
