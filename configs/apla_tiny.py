"""APLA (one-video text-to-video) with a tiny Stable-Diffusion-shaped model, for tests and CPU runs.

Not a pan-sharpening config: ``pansharp video-train --config configs/apla_tiny.py`` reads it
(not ``pansharp train``). The architecture is SD 1.x's (inflated UNet, AutoencoderKL, CLIP text
encoder) at toy widths, randomly initialised (``pretrained = ""``): the VAE is first fitted to the
clip's frames (``train.vae_steps``) and every UNet weight is trained (``train.trainable='all'``);
the prompt goes through the vocabulary-free hashing tokenizer. Frames: 8 x 64 x 64 -> latents
8 x 16 x 16 x 4 (VAE factor 4). Options: ``:smoke`` (4 frames of 16 x 16, narrower still, 5 steps)
and ``:micro`` (as smoke with a one-level UNet and VAE-factor 2: the unit tests' size, quick to compile).
"""

import ml_collections

CONFIG_ARGS = ("smoke", "micro")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.pretrained = ""  # a local diffusers folder (unet/, vae/, text_encoder/, tokenizer/); "" = random init
    c.model = ml_collections.ConfigDict({
        "unet": {"in_channels": 4, "out_channels": 4, "block_out_channels": (32, 64), "layers_per_block": 1,
                 "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"), "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
                 "attention_head_dim": 4, "cross_attention_dim": 32, "norm_num_groups": 8},
        "vae": {"block_out_channels": (16, 32, 32), "layers_per_block": 1, "norm_num_groups": 8, "latent_channels": 4},
        "text": {"vocab_size": 1000, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "max_position_embeddings": 16},
        "vgt": {"variant": "hyper", "dim": 64, "depth": 2, "heads": 4, "patch": 2, "mlp_ratio": 2, "scale": 0.1},
        "frame_attention": "self", "mse_weight": 1.0, "l1_weight": 1.0, "perceptual_weight": 0.0,
        "adv_weight": 0.05, "disc_channels": 64,
    })  # fmt: skip
    c.model.name = "apla"  # not a registry model: read by pansharp video-train only
    c.train = ml_collections.ConfigDict({"steps": 300, "lr": 3e-4, "d_lr": 1e-4, "weight_decay": 0.01, "batch": 2, "seed": 0,
                                         "trainable": "all", "vae_steps": 300, "vae_lr": 2e-3, "kl_weight": 1e-6, "log_every": 50})  # fmt: skip
    c.sample = ml_collections.ConfigDict({"steps": 20, "guidance": 1.0, "eta": 0.0})
    c.data = ml_collections.ConfigDict({"frames": 8, "size": 64})
    if arg in ("smoke", "micro"):
        c.model.unet.update(block_out_channels=(16, 32), attention_head_dim=2, cross_attention_dim=16, norm_num_groups=4)
        c.model.vae.update(block_out_channels=(8, 16), norm_num_groups=4)
        c.model.text.update(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                            max_position_embeddings=8)  # fmt: skip
        c.model.vgt.update(dim=16, depth=1, heads=2)
        c.model.disc_channels = 16
        c.train.update(steps=5, vae_steps=5, log_every=5)
        c.sample.steps = 3
        c.data.update(frames=4, size=16)
    if arg == "micro":
        c.model.unet.update(block_out_channels=(8,), down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",),
                            attention_head_dim=2, cross_attention_dim=8, norm_num_groups=4)  # fmt: skip
        c.model.vae.update(block_out_channels=(8, 8), norm_num_groups=4)
        c.model.text.update(vocab_size=64, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                            max_position_embeddings=8)  # fmt: skip
        c.model.vgt.update(variant="pure", dim=8, depth=1, heads=2)
        c.model.disc_channels = 8
        c.train.update(steps=5, vae_steps=2, log_every=5, lr=2e-3)
        c.sample.steps = 2
        c.data.update(frames=4, size=16)
    elif arg is not None and arg != "smoke":
        raise ValueError(f"unknown option {arg!r}")
    return c
