"""Floor 2: generative pan-sharpening on one diffusion core.

* :mod:`~pansharp_jax.generative.diffusion`: noise schedules (linear, cosine), the eps / x0 / v
  parameterisations, the DDPM training loss and the DDPM / DDIM samplers (one ``lax.scan``
  each), ``vmap``-ped over samples by :func:`~pansharp_jax.generative.diffusion.sample_many`;
  the pan-sharpening convention (residual ``hrms - lms`` or image target, ``[lms, pan]``
  condition) in ``pansharp_*`` / :func:`~pansharp_jax.generative.diffusion.sample_hrms`.
* The denoiser network used with it: :class:`pansharp_jax.nn.unet.UNet`.
"""
