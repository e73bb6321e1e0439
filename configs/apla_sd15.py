"""APLA on Stable Diffusion 1.5 (the paper's setting): weights from a local diffusers folder.

Not a pan-sharpening config: ``pansharp video-train --config configs/apla_sd15.py --pretrained
FOLDER`` reads it. The architecture fields are SD 1.5's and are replaced by the folder's
``unet/config.json``, ``vae/config.json`` and ``text_encoder/config.json`` when it is loaded.
Tune-A-Video's fine-tuning placeholder settings (only temporal layers and attention queries
train, lr 3e-5, 500 steps, 8 frames of 512 x 512; DDIM 50 steps, guidance 12.5), VGT and GAN
values as the tiny config: APLA's own numbers are not public. Needs a GPU.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling

CONFIG_ARGS = None


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = load_sibling(__file__, "apla_tiny").get_config()
    c.pretrained = ""  # set to the diffusers folder of SD 1.5 (e.g. with --pretrained)
    c.model.unet = ml_collections.ConfigDict({})  # SD 1.5 defaults (UNetConfig), or the folder's config.json
    c.model.vae = ml_collections.ConfigDict({})
    c.model.text = ml_collections.ConfigDict({})
    c.model.vgt.update(dim=256, depth=4, heads=8, patch=2)
    c.model.disc_channels = 128
    c.train.update(steps=500, lr=3e-5, trainable="tav", vae_steps=0, batch=1)
    c.sample.update(steps=50, guidance=12.5)
    c.data.update(frames=8, size=512)
    return c
