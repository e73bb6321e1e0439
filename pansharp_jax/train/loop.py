"""The training loop shared by every learned method.

``train(config, workdir)`` builds the data sources and the model (through the registry),
initialises or restores the state, runs ``config.steps`` updates with the jitted
:func:`~pansharp_jax.train.step.train_step`, evaluates on the validation set every
``config.eval_every`` steps with :func:`pansharp_jax.metrics.evaluate_reduced`, and saves
checkpoints (latest ``keep`` plus the best by ``config.checkpoint.best_metric``).

Reproducibility: the same config gives bit-identical parameters on CPU, and a run killed
at any point and restarted with ``resume=True`` ends with the parameters of an
uninterrupted run: the state (params, optimizer state, step, base key) and the data
iterator state are restored, and the key and batch of step ``s`` depend only on the seed
and ``s``.

Models with a k-means cluster cache (CANNet; ``config.cluster_cache.enabled``) run their
updates through :class:`~pansharp_jax.train.cluster_cache.ClusterCacheTrainer`, which feeds
and refreshes the cached cluster indices of each batch's samples; the cache is saved with
every checkpoint and restored on resume. With the switch off (the default) the loop is the
plain one above.

Run folder (:mod:`pansharp_jax.train.workdir`): before any data is prepared or any checkpoint
is opened, a ``workdir`` that holds a run of another model (its saved config's
``model.name``) is refused, as is one that holds checkpoints without ``resume``. Once the
data and the (restored) state are ready, the run's config is written to
``<workdir>/config.json`` (atomically; a run that fails to start leaves the file as it was).
A resumed run prints one ``config.KEY: old -> new`` line per value that differs from the
saved config and ``resumed from step N (<workdir>/checkpoints/N)``; a checkpoint whose
parameters do not fit the config's model is a one-line InputError naming the change.

Stopping: SIGINT (Ctrl-C) or SIGTERM during the loop finishes the current step, saves a
checkpoint of it (through the same atomic checkpoint manager), prints the resume command
(``pansharp train --workdir W --resume``) and raises :class:`TrainingInterrupted`, a
``KeyboardInterrupt`` carrying ``exit_code`` = 128 + the signal number (130 for SIGINT, 143
for SIGTERM). A second signal while the first is being handled stops at once. In a
multi-process run every process must receive the signal (as schedulers send it).

Precision: ``config.precision`` (``"fp32"`` or ``"bf16"``) and ``config.matmul_precision``
(``"default"``, ``"tf32"``, ``"highest"``) pick the :class:`~pansharp_jax.train.precision.Policy`
of the train and eval steps (read, and checked, before any data is prepared). The state is
float32 whatever the policy, so checkpoints of bf16 and fp32 runs are interchangeable.

Divergence: whenever the step's metrics come to the host anyway (every ``log_every`` steps,
and before every evaluation and checkpoint), a non-finite loss or parameter norm stops the
run with an :class:`~pansharp_jax.errors.InputError` (``loss became NaN at step N: lower
--config.optim.lr or check the data``); the diverged state is not saved, the checkpoints
saved before are kept.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from pansharp_jax.data import pipeline
from pansharp_jax.errors import InputError
from pansharp_jax.metrics import REDUCED_KEYS, evaluate_reduced
from pansharp_jax.models import registry
from pansharp_jax.train import cluster_cache, parallel
from pansharp_jax.train import workdir as run_dir
from pansharp_jax.train import losses as loss_lib
from pansharp_jax.train.checkpoint import Checkpointer
from pansharp_jax.train.cli_args import config_to_dict
from pansharp_jax.train.init_from import load_init_from
from pansharp_jax.train.logging import RunLogger, image_panel
from pansharp_jax.train.optim import make_optimizer
from pansharp_jax.train.precision import FP32, policy_from_config
from pansharp_jax.train.state import TrainState, step_rng
from pansharp_jax.train.step import make_eval_step, make_train_step


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
      state: the final :class:`TrainState` (arrays replicated over the mesh).
      metrics: the last validation metrics (empty without a validation set).
      train_metrics: the last logged training scalars.
      history: ``(step, {"loss": ...})`` for every logged step of this run.
      eval_history: ``(step, metrics)`` for every evaluation of this run.
      best: ``(step, value)`` of the best evaluation by the best metric, or None.
      start_step: the step this run started from (> 0 after a resume).
      clusters: the k-means cluster cache and its steps (``config.cluster_cache.enabled``;
        ``clusters.cache`` holds the indices), or None.
    """

    state: TrainState
    metrics: dict[str, float]
    train_metrics: dict[str, float]
    history: list[tuple[int, dict[str, float]]]
    eval_history: list[tuple[int, dict[str, float]]]
    best: tuple[int, float] | None
    start_step: int
    clusters: cluster_cache.ClusterCacheTrainer | None = None

    @property
    def params(self) -> Any:
        """The final parameters as NumPy arrays."""
        return parallel.to_host(self.state.params)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT / SIGTERM after saving a checkpoint of ``step``.

    A ``KeyboardInterrupt``, so callers that handle Ctrl-C handle it; ``exit_code`` is the
    conventional 128 + signal number (130 SIGINT, 143 SIGTERM), the exit status of
    ``python -m pansharp_jax.train``.

    Attributes:
      signum: the signal received.
      step: the step saved (and the step a resume continues from).
      workdir: the run folder.
      exit_code: 128 + ``signum``.
    """

    def __init__(self, signum: int, step: int, workdir: str | os.PathLike[str]) -> None:
        self.signum, self.step, self.workdir = int(signum), int(step), os.fspath(workdir)
        self.exit_code = 128 + self.signum
        super().__init__(f"{signal.Signals(self.signum).name} at step {self.step}")


class _StopSignals:
    """SIGINT / SIGTERM set a flag (checked between steps) instead of killing the process.

    Installed only from the main thread (Python delivers signals there); the previous
    handlers come back on :meth:`restore`. A second signal raises ``KeyboardInterrupt`` at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            old = signal.signal(sig, self._handle)
            self._old[sig] = signal.SIG_DFL if old is None else old

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def _check_finite(metrics: dict[str, float], step: int, last_saved: int | None, ckpt_dir: Path) -> None:
    """InputError when the loss (or the parameter norm) of ``step`` is NaN or infinite."""
    for key, what in (("loss", "loss"), ("param_norm", "parameters")):
        value = metrics.get(key)
        if value is None or math.isfinite(value):
            continue
        kind = "NaN" if math.isnan(value) else "inf"
        kept = (
            f"the last good checkpoint, step {last_saved}, is kept in {ckpt_dir}"
            if last_saved is not None
            else "no checkpoint was saved"
        )
        raise InputError(f"{what} became {kind} at step {step}: lower --config.optim.lr or check the data ({kept})")


def _get(cfg: Any, dotted: str, default: Any) -> Any:
    node = cfg
    for part in dotted.split("."):
        if node is None or part not in node:
            return default
        node = node[part]
    return node


def model_hooks(model: Any) -> tuple[bool, bool]:
    """(has ``training_loss``, has ``eval_output``): the model's own objective / evaluation image
    (see :mod:`pansharp_jax.models.registry`)."""
    return hasattr(type(model), "training_loss"), hasattr(type(model), "eval_output")


def init_state(config: ml_collections.ConfigDict, example: dict[str, np.ndarray], mesh: Any) -> tuple[TrainState, Any]:
    """A fresh replicated :class:`TrainState` for ``config`` and the LR schedule.

    ``example`` is a batch (NHWC NumPy) fixing the input shapes; parameters are drawn from
    ``PRNGKey(config.seed)``.
    """
    model = registry.build_model(config.model)
    tx, schedule = make_optimizer(config.optim, int(config.steps))
    seed = int(config.seed)
    ex = {k: np.asarray(example[k][:1]) for k in ("lrms", "pan", "lms")}

    def create() -> TrainState:
        init_key, run_key = jax.random.split(jax.random.PRNGKey(seed))
        variables = model.init({"params": init_key}, ex["lrms"], ex["pan"], ex["lms"], train=False)
        return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx, rng=run_key)

    state = jax.jit(create, out_shardings=parallel.replicated(mesh))()
    return state, schedule


def evaluate(
    state: TrainState,
    eval_fn: Any,
    source: pipeline.Source,
    info: pipeline.DataInfo,
    config: ml_collections.ConfigDict,
    mesh: Any,
    *,
    want_panel: int = 0,
) -> tuple[dict[str, float], np.ndarray | None]:
    """Mean validation metrics (``evaluate_reduced`` per image, averaged) and an image panel."""
    sums: dict[str, float] = {}
    count = 0
    panel = None
    batch_size = int(_get(config, "eval.batch_size", 8))
    for local, valid in pipeline.iterate_in_order(source, batch_size, limit=int(_get(config, "eval.max_examples", 0))):
        fused, losses = eval_fn(state, parallel.shard_batch(local, mesh))
        fused, losses = parallel.to_host((fused, losses))
        nv = len(valid)
        ref = source.get_batch(valid)
        scores = evaluate_reduced(
            fused[:nv],
            ref["gt"],
            ratio=info.ratio,
            max_dn=info.max_dn,
            block=int(_get(config, "eval.block", 32)),
            cut=int(_get(config, "eval.cut", 0)),
        )
        scores["loss"] = losses[:nv]
        for k, v in scores.items():
            sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64)))
        count += nv
        if want_panel and panel is None:
            k = min(want_panel, nv)
            panel = image_panel(ref["lms"][:k], fused[:k], ref["gt"][:k], ref["pan"][:k], info.rgb)
    return {k: v / max(count, 1) for k, v in sums.items()}, panel


def train(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike[str],
    resume: bool = False,
    wandb: bool = False,
) -> TrainResult:
    """Train the model of ``config`` in ``workdir``; see the module docstring.

    Args:
      config: the run config (``configs/default.py`` lists the fields).
      workdir: checkpoints go to ``<workdir>/checkpoints``, the config to
        ``<workdir>/config.json``, W&B files to ``<workdir>/wandb``.
      resume: continue from the latest checkpoint in ``workdir`` (a fresh start if none).
        Without it, a ``workdir`` that already holds checkpoints is refused.
      wandb: log to Weights & Biases. This argument alone turns W&B on (``--wandb``);
        ``config.logging.enabled`` no longer does.

    Returns:
      A :class:`TrainResult` with the final state and metrics.

    Raises:
      InputError: a bad config, a workdir holding another model's run (or checkpoints
        without ``resume``), bad data, or a loss that became NaN/inf.
      TrainingInterrupted: SIGINT / SIGTERM; a checkpoint of the current step was saved.
    """
    parallel.maybe_initialize_distributed()
    workdir_arg = workdir
    workdir = Path(workdir)
    config = ml_collections.ConfigDict(config)  # a copy: the caller's config is untouched
    cfg_dict = config_to_dict(config)
    total = int(config.steps)
    if total <= 0:
        raise InputError(f"config.steps must be positive, got {total}")
    is_main = jax.process_index() == 0
    policy = policy_from_config(config)  # a bad name fails here, before any file is touched
    augment = pipeline.check_augment(str(_get(config, "data.augment", "none") or "none"))
    if augment != "none" and bool(_get(config, "cluster_cache.enabled", False)):
        raise InputError("data.augment needs cluster_cache.enabled=False: the cache keys clusters on un-augmented samples")

    # The run folder first: plain files only, before any data preparation or Orbax call.
    saved = run_dir.saved_config(workdir) if workdir.is_dir() else None
    run_dir.check_model(workdir_arg, saved, str(_get(config, "model.name", "")))
    on_disk = run_dir.checkpoint_steps(workdir)
    if on_disk and not resume:
        raise InputError(
            f"{workdir} already holds checkpoints (latest step {on_disk[-1]}): pass resume=True (--resume) or use a new workdir"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    if resume and on_disk and saved is not None and is_main:
        for key, old, new in run_dir.config_changes(saved, cfg_dict):
            print(run_dir.format_change(key, old, new), flush=True)

    mesh = parallel.make_mesh()
    train_src, val_src, info = pipeline.build_sources(config.data)
    data_seed = int(_get(config, "data.seed", -1))
    it = pipeline.BatchIterator(
        train_src,
        int(config.batch_size),
        seed=data_seed if data_seed >= 0 else int(config.seed),
        augment=augment,
    )

    state, schedule = init_state(config, train_src.get_batch([0]), mesh)
    loss_fn = loss_lib.loss_from_config(config)  # config.loss (+ config.loss_weights for 'hybrid')
    clusters = cluster_cache.from_config(config, mesh, loss=loss_fn, schedule=schedule, num_examples=len(train_src), policy=policy)

    ck = config.checkpoint
    if val_src is not None and str(ck.best_metric) and str(ck.best_metric) not in (*REDUCED_KEYS, "loss"):
        raise InputError(
            f"checkpoint.best_metric {ck.best_metric!r} is not a validation metric: use one of {', '.join((*REDUCED_KEYS, 'loss'))}"
        )
    ckpt = Checkpointer(
        workdir / "checkpoints",
        keep=int(ck.keep),
        best_metric=str(ck.best_metric) if val_src is not None else "",
        mode=str(ck.best_mode),
        async_save=bool(_get(config, "checkpoint.async_save", True)),
    )
    latest = ckpt.latest_step()
    best: tuple[int, float] | None = None  # (step, value) of the best evaluation so far
    if latest is not None and not resume:
        ckpt.close()
        raise InputError(
            f"{workdir} already holds checkpoints (latest step {latest}): pass resume=True (--resume) or use a new workdir"
        )
    if latest is not None:

        def unfit(detail: str) -> InputError:
            model_changes = run_dir.config_changes(
                {"model": (saved or {}).get("model", {})}, {"model": cfg_dict.get("model", {})}
            )
            why = "; ".join(run_dir.format_change(k, a, b) for k, a, b in model_changes) or detail
            return InputError(
                f"checkpoint {ckpt.directory / str(latest)} does not fit this config's model ({why}): "
                "resume with the saved model settings or use another --workdir"
            )

        mismatch = ckpt.params_mismatch(latest, state.arrays())  # metadata only: no failed array reads
        if mismatch is not None:
            ckpt.close()
            raise unfit(mismatch)
        try:
            tree, data_state, saved_cfg = ckpt.restore(latest, state.arrays())
        except InputError:
            ckpt.close()
            raise
        except Exception as e:  # Orbax: the saved state does not fit this config's model
            ckpt.close()
            if not run_dir.config_changes((saved or {}).get("model", {}), cfg_dict.get("model", {})):
                raise
            raise unfit(f"{type(e).__name__}") from e
        state = state.with_arrays(tree)
        it.set_state(data_state)
        if clusters is not None:
            clusters.load_state_dict(ckpt.restore_clusters(latest))
        best = ckpt.best()
        if is_main:
            if saved is None:  # nothing saved in the workdir's files: report against the checkpoint
                for key, old, new in run_dir.config_changes(saved_cfg, cfg_dict):
                    print(run_dir.format_change(key, old, new), flush=True)
            print(f"resumed from step {latest} ({ckpt.directory / str(latest)})", flush=True)
    elif str(_get(config, "init_from", "") or ""):  # a fresh start from parts of other runs
        params = load_init_from(parallel.to_host(state.params), str(config.init_from))
        state = state.replace(params=jax.device_put(params, parallel.replicated(mesh)))
        if is_main:
            print(f"initialised from {config.init_from}", flush=True)
    start = int(parallel.to_host(state.step))
    base_key = parallel.to_host(state.rng)
    if is_main:  # once the data, the state and any restore are ready: a failed start leaves it alone
        run_dir.write_config(workdir, cfg_dict)

    logger = RunLogger(
        cfg_dict,
        workdir,
        use_wandb=bool(wandb),
        total_steps=total,
        start_step=start,
        project=str(_get(config, "logging.project", "pansharp_jax")),
        group=str(_get(config, "logging.group", "")),
        tags=tuple(_get(config, "logging.tags", ())),
        name=str(_get(config, "logging.name", "")),
        entity=str(_get(config, "logging.entity", "")),
        is_main=is_main,
        console=bool(_get(config, "logging.console", True)),
    )
    own_objective, own_output = model_hooks(registry.build_model(config.model))
    train_step = make_train_step(mesh, loss=loss_fn, schedule=schedule, own_objective=own_objective, policy=policy)
    eval_fn = make_eval_step(mesh, loss=loss_fn, own_output=own_output, policy=policy)
    log_every = max(1, int(_get(config, "log_every", 50)))
    eval_every = int(config.eval_every)
    ckpt_every = int(_get(config, "checkpoint.every", 0))
    best_metric, best_mode = str(ck.best_metric), str(ck.best_mode)
    n_images = int(_get(config, "logging.images", 4))

    history: list[tuple[int, dict[str, float]]] = []
    eval_history: list[tuple[int, dict[str, float]]] = []
    last_train: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    step = start
    last_saved: int | None = latest
    stop = _StopSignals()
    interrupted: int | None = None  # the signal that stopped the loop

    def save(metrics_at_step: dict[str, float] | None) -> None:
        nonlocal last_saved
        cache_arrays = clusters.state_dict() if clusters is not None else None
        ckpt.save(step, state.arrays(), it.get_state(), cfg_dict, metrics=metrics_at_step, clusters=cache_arrays)
        last_saved = step

    try:
        stop.install()
        logger.print(
            f"training {_get(config, 'model.name', '?')} from step {start} to {total} in {workdir} "
            + ("" if policy == FP32 else f"in {policy.describe()} ")
            + "(Ctrl-C saves a checkpoint and stops)"
        )
        while step < total:
            if clusters is None:
                batch = parallel.shard_batch(next(it), mesh)
                state, metrics = train_step(state, batch, step_rng(base_key, step))
            else:  # the same update, with this batch's cached k-means clusters fed / refreshed
                ids = clusters.batch_ids(it)
                batch = parallel.shard_batch(next(it), mesh)
                state, metrics = clusters.train_step(state, batch, ids, step, step_rng(base_key, step))
            step += 1
            do_log = step % log_every == 0 or step == total
            do_eval = val_src is not None and eval_every > 0 and (step % eval_every == 0 or step == total)
            do_save = do_eval or (ckpt_every > 0 and step % ckpt_every == 0) or step == total
            host: dict[str, float] | None = None
            if do_log or do_eval or do_save:  # the metrics come to the host anyway: check them
                host = {k: float(v) for k, v in parallel.to_host(metrics).items()}
                _check_finite(host, step, last_saved, ckpt.directory)
            if do_log and host is not None:
                last_train = dict(host)
                last_train["steps_per_sec"] = logger.steps_per_sec
                history.append((step, last_train))
                logger.log_scalars(step, last_train)
                logger.advance(step, f"loss {last_train['loss']:.4g}")
            else:
                logger.advance(step)
            eval_metrics = None
            if do_eval:
                eval_metrics, panel = evaluate(
                    state, eval_fn, val_src, info, config, mesh, want_panel=n_images if logger.run else 0
                )
                last_eval = eval_metrics
                eval_history.append((step, eval_metrics))
                if best_metric in eval_metrics:
                    value = eval_metrics[best_metric]
                    if best is None or (value < best[1] if best_mode == "min" else value > best[1]):
                        best = (step, value)
                logger.log_eval(step, eval_metrics, panel)
                if best is not None:
                    logger.log_scalars(step, {best_metric: best[1]}, prefix="best/")
            if do_save:
                save(eval_metrics)
            if stop.signum is not None and step < total:
                if last_saved != step:
                    if host is None:
                        host = {k: float(v) for k, v in parallel.to_host(metrics).items()}
                        _check_finite(host, step, last_saved, ckpt.directory)  # never save a diverged state
                    save(None)
                ckpt.wait()
                interrupted = stop.signum
                break
    finally:
        stop.restore()
        ckpt.close()
        logger.close()
    if interrupted is not None:
        if is_main:
            name = signal.Signals(interrupted).name
            print(
                f"{name}: stopped at step {step}, checkpoint saved in {ckpt.directory / str(step)}; "
                f"resume with: {run_dir.resume_command(workdir_arg)}",
                flush=True,
            )
        raise TrainingInterrupted(interrupted, step, workdir_arg)
    return TrainResult(state, last_eval, last_train, history, eval_history, best, start, clusters)
