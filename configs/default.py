"""Shared defaults of every training config (big_vision style: ``get_config()`` -> ConfigDict).

Method configs (``configs/<method>_<dataset>.py``) start from these and set the model and
the data. Every field can be overridden on the command line, e.g.
``python -m pansharp_jax.train --config configs/fusionnet_wv3.py --config.optim.lr=1e-3``.
Relative data paths are resolved under ``data.root`` or, when empty, ``$PANSHARP_DATA``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # parameter init and per-step keys; also the data shuffling seed unless data.seed >= 0

    # The method: registry name plus its sizes (method configs copy registry.default_config(name)).
    c.model = ml_collections.ConfigDict({"name": "", "bands": 8})

    c.data = ml_collections.ConfigDict()
    c.data.kind = "panc"  # 'panc' (PanCollection h5), 'wald_scene' (full-res scene), 'arrays' (npz), 'hisr' (HISR h5)
    c.data.root = ""  # '' -> $PANSHARP_DATA
    c.data.train = ""  # panc/arrays: training file
    c.data.val = ""  # panc/arrays: validation file ('' -> no validation)
    c.data.scale = 2047.0  # panc: DN of value 1.0 (the h5 stores DN): 2047 (11-bit), 1023 (GF2)
    c.data.sensor = ""  # '' -> from the scene file / generic
    c.data.ratio = 4
    c.data.scene = ""  # wald_scene: the full-resolution scene file
    c.data.patch = 64  # wald_scene: training patch side on the reduced PAN grid (multiple of ratio)
    c.data.stride = 32
    c.data.val_patch = 0  # wald_scene: validation tile side (0 -> patch)
    c.data.holdout_side = "right"  # wald_scene: held-out (validation-only) region
    c.data.holdout_fraction = 0.25
    c.data.seed = -1  # shuffling seed; -1 -> c.seed
    c.data.augment = "none"  # none | dihedral (8 rotations/flips per sample; pipeline.BatchIterator)

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adam"  # adam | adamw | sgd
    c.optim.lr = 3e-4
    c.optim.schedule = "constant"  # constant | cosine | step
    c.optim.warmup_steps = 0
    c.optim.decay_every = 0  # step schedule: lr *= decay_factor every decay_every steps
    c.optim.decay_factor = 0.5
    c.optim.min_lr_ratio = 0.0  # cosine floor, as a fraction of lr
    c.optim.weight_decay = 0.0  # decoupled (AdamW); 0 = plain Adam
    c.optim.grad_clip = 0.0  # global-norm clipping; 0 = off
    c.optim.frozen = ""  # comma-separated param paths never updated, e.g. "prior" (train/optim.py)
    c.init_from = ""  # DST=WORKDIR[@SRC],...: params copied from other runs on a fresh start (train/init_from.py)
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.momentum = 0.9  # sgd only

    c.loss = "l1"  # l1 | l2 | fft | dwt | hybrid (on the [0, 1] scale)
    # weights and options of loss = 'hybrid' (train/losses.py): l1*L1 + l2*MSE + fft*Fourier-L1 + dwt*wavelet-L1
    c.loss_weights = ml_collections.ConfigDict(
        {"l1": 1.0, "l2": 0.0, "fft": 0.1, "dwt": 0.1, "wavelet": "haar", "levels": 2, "fft_norm": "ortho"}
    )
    # CANNet's per-sample k-means cache (pansharp_jax/train/cluster_cache.py): epoch 1 clusters
    # every training sample and stores its indices; later epochs reuse them ('ready', no k-means)
    # or re-cluster warm-started from them ('update') by `policy`: a period in epochs ('2') or
    # 'last:period,...,period' (the official default: every epoch up to 10, every 10th up to 100,
    # every 20th up to 300, then every 50th). Saved with every checkpoint. Only for models with
    # k-means layers (cannet); evaluation always clusters afresh.
    c.cluster_cache = ml_collections.ConfigDict({"enabled": False, "policy": "10:1,100:10,300:20,50"})
    # Mixed precision (pansharp_jax/train/precision.py): 'fp32' | 'bf16'. bf16 computes every
    # layer in bfloat16; parameters, optimizer state, loss and metrics stay float32.
    c.precision = "fp32"
    # float32 matmuls / convs: 'default' (the backend's: TF32 on recent NVIDIA GPUs) | 'tf32' |
    # 'highest' (full float32). No effect on CPU.
    c.matmul_precision = "default"
    c.steps = 100_000
    c.batch_size = 32  # global: summed over all devices and hosts
    c.log_every = 50
    c.eval_every = 1000

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 16
    c.eval.max_examples = 0  # 0 = the whole validation set
    c.eval.block = 32  # Q2n / Q_avg block (the toolbox's 32)
    c.eval.cut = 0  # border cut; 0 for patches (the toolbox's 21 needs images >= 73 px)

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 1000  # also saved after every evaluation and at the end
    c.checkpoint.keep = 3  # latest checkpoints kept, plus the best one
    c.checkpoint.best_metric = "ERGAS"
    c.checkpoint.best_mode = "min"
    c.checkpoint.async_save = True

    c.logging = ml_collections.ConfigDict()
    c.logging.enabled = True  # W&B settings used when a run is started with --wandb (off otherwise; offline when not logged in)
    c.logging.project = "pansharp_jax"
    c.logging.group = ""
    c.logging.tags = ("baseline",)
    c.logging.name = ""
    c.logging.entity = ""
    c.logging.images = 4  # fused samples in the W&B panel at every evaluation
    c.logging.console = True  # rich progress bar
    return c


def pancollection(
    method: str,
    dataset: str,
    *,
    lr: float,
    batch_size: int,
    steps: int,
    loss: str = "l2",
    decay_every: int = 0,
    decay_factor: float = 0.5,
    arg: str | None = None,
) -> ml_collections.ConfigDict:
    """A method trained on a PanCollection dataset (``wv3``, ``gf2``, ``qb``, ``wv2``).

    Data: ``pancollection/training_<dataset>/{train,valid}_<dataset>.h5`` under ``data.root`` /
    ``$PANSHARP_DATA`` (not distributed with this project). Adam with a step schedule when
    ``decay_every`` > 0. ``arg == 'smoke'``: 20 steps to check a set-up end to end.
    """
    from pansharp_jax.data.sensors import get_sensor
    from pansharp_jax.models import registry

    sensor = get_sensor(dataset)
    c = get_config()
    c.model = registry.default_config(method)
    c.model.bands = sensor.nbands
    c.data.kind = "panc"
    c.data.train = f"pancollection/training_{dataset}/train_{dataset}.h5"
    c.data.val = f"pancollection/training_{dataset}/valid_{dataset}.h5"
    c.data.scale = sensor.max_dn
    c.data.sensor = sensor.name
    c.loss = loss
    c.optim.lr = lr
    if decay_every:
        c.optim.schedule = "step"
        c.optim.decay_every = decay_every
        c.optim.decay_factor = decay_factor
    c.steps = steps
    c.batch_size = batch_size
    c.eval_every = 2000
    c.checkpoint.every = 2000
    c.logging.group = f"{method}_{dataset}"
    c.logging.tags = (method, dataset, "reduced")
    if arg == "smoke":
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
        c.optim.warmup_steps = 0
    return c


def cave_mhif(method: str, ratio: int) -> ml_collections.ConfigDict:
    """MHIF on CAVE x``ratio``: a 31-band LR-HSI with an RGB HR-MSI guide (the ``pan`` input).

    Data: ``data.kind = 'arrays'`` reads ``cave/train_cave_x{ratio}.npz`` /
    ``cave/test_cave_x{ratio}.npz`` under ``data.root`` / ``$PANSHARP_DATA``: NHWC ``lrms``
    (N, h, w, 31), ``pan`` (N, r h, r w, 3) RGB guide, ``gt`` (N, r h, r w, 31), ``lms``
    (bicubic), all on [0, 1], as ``experiments/make_cave_patches.py --root DIR`` writes them
    (CAVE ``balloons`` training patches, ``fake_and_real_food`` for validation) with
    :func:`pansharp_jax.data.hsi.mhif_patches`. PanCollection HISR h5 files: set
    ``data.kind = 'hisr'`` and ``data.train`` / ``data.val`` to them. ``data.scale`` 65535
    (16-bit CAVE PNGs) is the DN of 1.0 for the DN-based metrics. The caller sets the recipe.
    """
    from pansharp_jax.models import registry

    c = get_config()
    c.model = registry.default_config(method)
    c.model.bands = 31
    c.model.guide_bands = 3
    c.data.kind = "arrays"
    c.data.train = f"cave/train_cave_x{ratio}.npz"
    c.data.val = f"cave/test_cave_x{ratio}.npz"
    c.data.ratio = ratio
    c.data.sensor = ""
    c.data.scale = 65535.0
    c.batch_size = 32
    c.eval_every = 2000
    c.checkpoint.every = 2000
    c.logging.group = f"{method}_cave_x{ratio}"
    c.logging.tags = (method, "cave", "mhif", f"x{ratio}")
    return c
