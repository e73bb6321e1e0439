"""One-video fine-tuning of APLA (and fitting the tiny config's VAE), as compact jitted optax loops.

:func:`finetune` — Tune-A-Video's setting with APLA's losses. The text encoder and the VAE are
frozen; the video is encoded once (posterior means) and the prompt once. Each step draws
``batch`` timesteps ``t ~ U{0..T-1}`` and noises (one per copy of the video), predicts
``eps = eps_unet + delta`` (:class:`~pansharp_jax.generative.apla.APLA`), and minimises the
hyper-loss to the true noise plus ``adv_weight`` x the non-saturating generator loss of the
frame discriminator on the x0 estimate; then (same step, same x0 estimate, stopped gradient)
one discriminator update. Optimisers: AdamW (``lr``, weight decay 0.01, global-norm clip 1.0)
for the UNet and VGT; Adam (``d_lr``, b1 = 0.5) for D. ``trainable``: ``'all'`` (every UNet
parameter; the tiny config, which has no pre-trained weights) or ``'tav'`` (Tune-A-Video:
only the temporal layers and the query projections of ``attn1``/``attn2``; the rest stays
frozen) — the VGT always trains. Keys: step i uses ``fold_in(key(seed), i)``, so a seed gives
the same parameters every run (on one machine and backend).

:func:`fit_vae` — the tiny config has no pre-trained VAE, so its VAE is fitted to the frames
of the clip first (L1 + MSE reconstruction + ``kl_weight`` x KL to N(0, I), Adam); a
pre-trained SD VAE is never refitted (``vae_steps = 0``).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pansharp_jax.errors import InputError
from pansharp_jax.generative import diffusion
from pansharp_jax.generative.apla import APLA, d_loss, g_loss, hyper_loss, schedule

TRAINABLE = ("all", "tav")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning settings (ours; Tune-A-Video's lr 3e-5 and 500 steps suit SD weights, not the tiny random model)."""

    steps: int = 300
    lr: float = 3e-4
    d_lr: float = 1e-4
    weight_decay: float = 0.01
    batch: int = 2
    seed: int = 0
    trainable: str = "all"
    vae_steps: int = 0
    vae_lr: float = 2e-3
    kl_weight: float = 1e-6
    log_every: int = 50

    @classmethod
    def from_dict(cls, d: Any) -> TrainConfig:
        """From a (Config)dict; unknown keys ignored."""
        d = dict(d.to_dict() if hasattr(d, "to_dict") else d)
        names = {f.name for f in dataclasses.fields(cls)}
        out = cls(**{k: v for k, v in d.items() if k in names})
        if out.trainable not in TRAINABLE:
            raise InputError(f"trainable must be one of {', '.join(TRAINABLE)}, got {out.trainable!r}")
        return out


def trainable_labels(gparams: dict[str, Any], mode: str) -> Any:
    """'train' / 'freeze' per leaf of ``{"unet", "vgt"?}`` for ``mode`` (module docstring)."""

    def label(path: Any, _: Any) -> str:
        keys = [str(getattr(k, "key", k)) for k in path]
        if mode == "all" or keys[0] == "vgt" or "attn_temp" in keys or "norm_temp" in keys:
            return "train"
        return "train" if ("attn1" in keys or "attn2" in keys) and "to_q" in keys else "freeze"

    return jax.tree_util.tree_map_with_path(label, gparams)


def fit_vae(model: APLA, params: dict[str, Any], video: Any, tcfg: TrainConfig, log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], list[float]]:
    """Fit the VAE to the frames of ``video`` (T, H, W, 3) on [0, 1] for ``tcfg.vae_steps`` Adam steps
    (full batch of frames); returns (params with the new ``vae``, per-step losses)."""
    x = 2.0 * jnp.asarray(video, jnp.float32) - 1.0
    step, opt = _vae_step(model, float(tcfg.vae_lr), float(tcfg.kl_weight))
    p, o, losses = params["vae"], opt.init(params["vae"]), []
    for i in range(int(tcfg.vae_steps)):
        p, o, loss = step(p, o, x)
        losses.append(float(loss))
        if log and (i + 1) % max(tcfg.log_every, 1) == 0:
            log(f"vae step {i + 1}/{tcfg.vae_steps}: loss {losses[-1]:.4f}")
    return {**params, "vae": p}, losses


@functools.lru_cache(maxsize=4)
def _vae_step(model: APLA, lr: float, kl_weight: float) -> tuple[Callable[..., Any], Any]:
    """(jitted VAE-fitting step ``(p, opt_state, x) -> (p, opt_state, loss)``, optimiser); cached."""
    vae, opt = model.vae, optax.adam(lr)

    def loss_fn(p: Any, x: jax.Array) -> jax.Array:
        rec, mean, logvar = vae.apply({"params": p}, x)
        kl = 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
        return jnp.mean(jnp.abs(rec - x)) + jnp.mean(jnp.square(rec - x)) + kl_weight * kl

    def step(p: Any, o: Any, x: jax.Array) -> tuple[Any, Any, jax.Array]:
        loss, g = jax.value_and_grad(loss_fn)(p, x)
        u, o = opt.update(g, o, p)
        return optax.apply_updates(p, u), o, loss

    return jax.jit(step), opt


@functools.lru_cache(maxsize=8)
def make_step(model: APLA, tcfg: TrainConfig) -> tuple[Callable[..., Any], Any, Any]:
    """(jitted step, generator optimiser, D optimiser) of :func:`finetune` (cached per model and settings).

    ``step(G, D, opt_g, opt_d, z0 (1, T, h, w, C), ctx (1, L, D), key) -> (G, D, opt_g, opt_d, metrics)``.
    """
    cfg, sched = model.cfg, schedule(model.cfg)
    adv = cfg.adv_weight > 0
    adamw = optax.adamw(tcfg.lr, weight_decay=tcfg.weight_decay)
    if tcfg.trainable != "all":
        labels = functools.partial(trainable_labels, mode=tcfg.trainable)
        adamw = optax.multi_transform({"train": adamw, "freeze": optax.set_to_zero()}, labels)
    tx_g = optax.chain(optax.clip_by_global_norm(1.0), adamw)
    tx_d = optax.adam(tcfg.d_lr, b1=0.5)
    disc, n = model.disc, int(tcfg.batch)

    def step(G: Any, D: Any, og: Any, od: Any, z0: jax.Array, ctx: jax.Array, key: jax.Array) -> tuple[Any, ...]:
        k_t, k_n = jax.random.split(key)
        t = jax.random.randint(k_t, (n,), 0, sched.T, dtype=jnp.int32)
        z = jnp.repeat(z0, n, axis=0)
        noise = jax.random.normal(k_n, z.shape, jnp.float32)
        x_t = diffusion.q_sample(sched, z, t, noise)
        c = jnp.repeat(ctx, n, axis=0)
        ab = sched.alpha_bar[t]

        def gl(g: Any) -> tuple[jax.Array, tuple[jax.Array, ...]]:
            eps, delta = model.eps(g, x_t, t, c)
            hl = hyper_loss(eps, noise, cfg)
            x0 = diffusion.x0_from_eps(x_t, eps, ab)
            gadv = g_loss(disc.apply({"params": D}, x0)) if adv else jnp.float32(0.0)
            return hl + cfg.adv_weight * gadv, (x0, hl, gadv, jnp.mean(jnp.abs(delta)))

        (loss, (x0, hl, gadv, dmag)), grads = jax.value_and_grad(gl, has_aux=True)(G)
        upd, og = tx_g.update(grads, og, G)
        G = optax.apply_updates(G, upd)
        dl = jnp.float32(0.0)
        if adv:
            x0 = jax.lax.stop_gradient(x0)
            dl, gd = jax.value_and_grad(lambda d: d_loss(disc.apply({"params": d}, z), disc.apply({"params": d}, x0)))(D)
            ud, od = tx_d.update(gd, od, D)
            D = optax.apply_updates(D, ud)
        return G, D, og, od, {"loss": loss, "hyper": hl, "g_adv": gadv, "d_loss": dl, "delta": dmag}

    return jax.jit(step), tx_g, tx_d


def finetune(model: APLA, params: dict[str, Any], video: Any, ids: Any, tcfg: TrainConfig,
             log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], dict[str, list[float]]]:  # fmt: skip
    """Fine-tune on one video (T, H, W, 3) on [0, 1] with prompt ids (1, L) for ``tcfg.steps`` steps.

    Returns (params with the new ``unet``, ``vgt``, ``disc``; history of the per-step metrics
    ``loss``, ``hyper``, ``g_adv``, ``d_loss``, ``delta`` (mean |perturbation|) plus ``seconds``).
    """
    v = jnp.asarray(video, jnp.float32)
    if v.ndim != 4 or v.shape[-1] != 3:
        raise InputError(f"video must be (T, H, W, 3), got shape {tuple(v.shape)}")
    z0 = model.encode(params, v[None])
    ctx = model.encode_text(params, jnp.asarray(ids, jnp.int32))
    G = {k: params[k] for k in ("unet", "vgt") if k in params}
    D = params["disc"]
    step, tx_g, tx_d = make_step(model, dataclasses.replace(tcfg, steps=0, seed=0, log_every=0, vae_steps=0))
    og, od = tx_g.init(G), tx_d.init(D)
    base = jax.random.key(int(tcfg.seed))
    hist: dict[str, list[float]] = {k: [] for k in ("loss", "hyper", "g_adv", "d_loss", "delta")}
    t0 = time.perf_counter()
    for i in range(int(tcfg.steps)):
        G, D, og, od, m = step(G, D, og, od, z0, ctx, jax.random.fold_in(base, i))
        for k, val in m.items():
            hist[k].append(float(val))
        if log and ((i + 1) % max(tcfg.log_every, 1) == 0 or i == 0):
            log(f"step {i + 1}/{tcfg.steps}: loss {hist['loss'][-1]:.4f} (hyper {hist['hyper'][-1]:.4f}, "
                f"g_adv {hist['g_adv'][-1]:.3f}, d {hist['d_loss'][-1]:.3f}, |delta| {hist['delta'][-1]:.4f})")  # fmt: skip
    hist["seconds"] = [time.perf_counter() - t0]
    if not np.isfinite(hist["loss"]).all():
        raise InputError("fine-tuning diverged (NaN/Inf loss): lower the learning rate")
    return {**params, **G, "disc": D}, hist


__all__ = ["build", "TrainConfig", "finetune", "fit_vae", "make_step", "trainable_labels", "TRAINABLE"]


def build(config: Any, frames: int, size: tuple[int, int], seed: int = 0) -> tuple[APLA, dict[str, Any], Any]:
    """(model, params, tokenizer) from a run config (``configs/apla_*.py``: ``model``, ``pretrained``).

    With ``config.pretrained`` (a local diffusers folder), its ``unet``/``vae``/``text_encoder``
    configs replace the architecture fields, its weights replace the random ones (the temporal
    layers, VGT and discriminator stay new), and its scheduler config sets the betas; its
    ``tokenizer/`` (vocab.json + merges.txt) gives the BPE tokenizer.
    """
    from pathlib import Path

    from pansharp_jax.generative.apla import APLAConfig
    from pansharp_jax.generative.apla_load import load_part, read_config
    from pansharp_jax.generative.apla_text import make_tokenizer

    mc = config.model.to_dict() if hasattr(config.model, "to_dict") else dict(config.model)
    folder = str(config.get("pretrained", "") or "")
    if folder:
        root = Path(folder)
        if not root.is_dir():
            raise InputError(f"pretrained folder {root} not found")
        for part, key in (("unet", "unet"), ("vae", "vae"), ("text_encoder", "text")):
            if (root / part).is_dir():
                mc[key] = read_config(root / part)
        if (root / "scheduler" / "scheduler_config.json").is_file():
            s = read_config(root / "scheduler", "scheduler_config.json")
            mc.update(beta_start=float(s.get("beta_start", 0.00085)), beta_end=float(s.get("beta_end", 0.012)),
                      beta_schedule=str(s.get("beta_schedule", "scaled_linear")), train_timesteps=int(s.get("num_train_timesteps", 1000)))  # fmt: skip
    model = APLA(APLAConfig.from_dict(mc))
    params = model.init(seed, frames, size)
    if folder:
        for part, key in (("unet", "unet"), ("vae", "vae"), ("text_encoder", "text")):
            if (Path(folder) / part).is_dir():
                params[key] = jax.tree.map(jnp.asarray, load_part(folder, part, params[key]))
    tok = make_tokenizer(model.cfg.text, Path(folder) / "tokenizer" if folder else None)
    return model, params, tok
