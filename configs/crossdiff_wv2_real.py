"""CrossDiff on real full-resolution scenes (``fr/*_pnn.mat``), in two stages of the one trainer.

1. ``:pretext`` (the default): the cross-predictive pretext task (PAN2MS and MS2PAN conditional
   DDPMs) on **full-resolution** patches of the scene's training part (``data.resolution =
   'full'``: no Wald reduction, no ground truth, no validation set), right quarter of the MS
   grid held out as in ``fusionnet_wv2_real.py``; the head is frozen (unused)::

       pansharp train --config configs/crossdiff_wv2_real.py:pretext --workdir runs/crossdiff_wv2_pretext

2. ``:head``: the fusion head on Wald-reduced patches (the data of ``fusionnet_wv2_real.py``,
   validation on the held-out quarter), both UNets copied from the stage-1 run (``init_from``)
   and frozen (``optim.frozen = 'pan2ms,ms2pan'``)::

       pansharp train --config configs/crossdiff_wv2_real.py:head --workdir runs/crossdiff_wv2_head

Options (``:ARG``, comma-separated):

* ``pretext`` / ``head``: the stage (``pretext_smoke`` / ``head_smoke``: with ``smoke``);
* ``smoke``: tiny UNets of two levels (widths 8, 16: quick to compile on a CPU; the real
  config has four), 32-pixel patches, a few steps; the head then starts from random frozen
  UNets unless ``--config.init_from`` is given;
* the sensor of this stage's data: ``wv2`` (default, ``fr/wv2_pnn.mat``, 8 bands),
  ``geoeye1`` or ``ikonos`` (4 bands), ``bgrn`` (pretext only: both 4-band scenes);
* ``enc=SENSOR`` (head only): the encoders come from ``runs/crossdiff_SENSOR_pretext``, another
  sensor's run (cross-sensor use; ``model.band_map`` maps the data's bands onto the encoders',
  :func:`pansharp_jax.generative.crossdiff.band_map`);
* ``scratch`` (head only): no pre-training (random frozen UNets), the baseline of the
  cross-sensor table.

Training values the paper leaves open or that a CPU cannot afford are ours: pretext lr 3e-4
AdamW (wd 0), batch 32 (spec), 64-pixel patches (the paper's 256), 20k steps; head AdamW
3e-4 halved at half of 4k steps (the spec's StepLR), batch 32.
"""

import ml_collections

from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_sibling

CONFIG_ARGS = None  # combined options, checked below
SCENES = {
    "wv2": ("fr/wv2_pnn.mat", "WV2", 8),
    "geoeye1": ("fr/geoeye1_pnn.mat", "GeoEye1", 4),
    "ikonos": ("fr/ikonos_pnn.mat", "IKONOS", 4),
    "bgrn": ("fr/geoeye1_pnn.mat,fr/ikonos_pnn.mat", "", 4),
}
OPTIONS = ("pretext", "head", "smoke", "pretext_smoke", "head_smoke", "scratch", *SCENES)


def pretext_run(sensor: str) -> str:
    """The conventional workdir of a sensor's stage-1 run."""
    return f"runs/crossdiff_{sensor}_pretext"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    from pansharp_jax.errors import InputError
    from pansharp_jax.generative.crossdiff import HEAD_FROZEN, PRETEXT_FROZEN, band_map

    opts = [a.strip() for a in (arg or "").split(",") if a.strip()]
    enc = None
    for o in opts:
        if o.startswith("enc="):
            enc = o[4:]
            if enc not in SCENES:
                raise InputError(f"crossdiff_wv2_real.py: unknown encoder sensor {enc!r} (use {', '.join(SCENES)})")
        elif o not in OPTIONS:
            raise InputError(f"crossdiff_wv2_real.py: unknown option :{o} (use {', '.join(OPTIONS)}, enc=SENSOR)")
    smoke = any(o in ("smoke", "pretext_smoke", "head_smoke") for o in opts)
    stage = "head" if any(o in ("head", "head_smoke") for o in opts) else "pretext"
    if stage == "pretext" and (enc or "scratch" in opts):
        raise InputError("crossdiff_wv2_real.py: enc= and scratch are head options")
    sensors = [o for o in opts if o in SCENES]
    if len(sensors) > 1 or (stage == "head" and sensors == ["bgrn"]):
        raise InputError("crossdiff_wv2_real.py: one data sensor per stage (bgrn for the pretext only)")
    sensor = sensors[0] if sensors else "wv2"
    scene, sensor_name, bands = SCENES[sensor]

    c = load_sibling(__file__, "fusionnet_wv2_real").get_config()
    c.model = registry.default_config("crossdiff")
    c.model.bands = bands
    c.model.stage = stage
    c.data.scene = scene
    c.data.sensor = sensor_name
    c.data.resolution = "full" if stage == "pretext" else "reduced"
    c.data.pan_scene = ""  # GeoTIFF pairs: the PAN file(s) of data.scene
    c.loss = "l1"  # reported at validation; training uses the model's own loss
    c.optim.name = "adamw"
    c.optim.weight_decay = 0.0
    c.optim.lr = 3e-4
    c.optim.warmup_steps = 0
    c.batch_size = 32
    if stage == "pretext":
        c.data.patch, c.data.stride = 64, 64
        c.optim.schedule = "constant"
        c.optim.frozen = ",".join(PRETEXT_FROZEN)
        c.steps, c.checkpoint.every, c.eval_every = 20_000, 1000, 0
        c.checkpoint.best_metric = ""  # no validation set at full resolution: the latest checkpoint
    else:
        enc = enc or sensor
        c.model.band_map = band_map(SCENES[enc][2], bands)
        c.optim.schedule = "step"
        c.steps = 4000
        c.optim.decay_every, c.optim.decay_factor = c.steps // 2, 0.5
        c.optim.frozen = ",".join(HEAD_FROZEN)
        run = pretext_run(enc)
        c.init_from = "" if "scratch" in opts else f"pan2ms={run}@pan2ms,ms2pan={run}@ms2pan"
        c.eval_every, c.checkpoint.every = 250, 250
    c.logging.group = "crossdiff_wv2_real"
    c.logging.tags = ("crossdiff", sensor, stage) + ((f"enc_{enc}",) if enc else ())
    if smoke:
        c.model.update(widths=(8, 16), head_channels=8)
        c.data.patch, c.data.stride, c.data.val_patch = 32, (64 if stage == "head" else 128), 32
        c.steps, c.log_every = 20, 5
        c.checkpoint.every, c.eval_every = 10, (10 if stage == "head" else 0)
        c.batch_size, c.eval.batch_size, c.eval.max_examples = 4, 2, 2
        c.optim.decay_every = 10
        c.init_from = ""
    return c
