"""Where methods come from: a list of sources, asked in order by :func:`resolve`.

Built in: :class:`ClassicalSource` (the toolbox baselines of :mod:`pansharp_jax.classical`)
and :class:`ModelSource` (the learned models of :mod:`pansharp_jax.models.registry`, with
the authors' released PyTorch weights, ``weights=FILE.pth``, or a ``pansharp train`` run,
``ckpt=WORKDIR``). A new source is any object with ``name``, ``options`` (the method
options it takes), ``names()`` and ``resolve(name, opts) -> Method | None``, added with
:func:`register_source`; generative samplers, MHIF models and analysis tools plug in so.

This module is the only place that builds runners: the CLI, ``experiments/``,
``benchmarks/`` and the notebooks call :func:`resolve`.

Generative models (the sampler hook). A registered model is generative when its Flax module
class defines ``make_sampler(self, params) -> fn``, callable on the unbound module built from
the model config, with ``params`` the whole trained tree (what ``init`` put under
``'params'``) and::

    fn(lrms, pan, lms, rng, *, samples: int, steps: int) -> (mean, std)

lrms (N, h, w, C), pan (N, H, W, 1), lms (N, H, W, C) (``interp23tap`` of lrms) float32 on the
[0, 1] scale, ``rng`` a JAX key; ``mean`` and ``std`` (N, H, W, C) over ``samples`` draws of
``steps`` steps, [0, 1] scale, not clipped (std with ddof 0). ``fn`` must be pure and jittable
with ``samples``/``steps`` static (use
:func:`pansharp_jax.generative.diffusion.draw_many`, so that draw s uses
``split(rng, samples)[s]``). :func:`from_params` (and so :class:`ModelSource`) then sets
``Method.generative`` and ``Method.sample_batch`` (jitted once per method), which
:meth:`Method.sample` and ``pansharp sample`` call; ``fuse`` keeps using the module's
``__call__`` (a deterministic output). Examples: ``sbm`` (:class:`~pansharp_jax.generative.sb_matching.SBM`).

Precision (learned models): ``resolve(name, ..., precision="bf16", matmul_precision=...)``
(``pansharp fuse --precision bf16``) or ``from_params(..., precision=)`` fuse with the
parameters and the inputs cast to bf16 and every layer computing in bf16
(:class:`~pansharp_jax.train.precision.Policy`); ``lms`` is upsampled in float32 before the
cast and the output is float32. The products' tags say ``precision``. ``sample`` (the
generative samplers) stays float32. Classical methods run in float64 and take no precision.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pansharp_jax import __version__
from pansharp_jax.data.io import sha256_file
from pansharp_jax.errors import InputError
from pansharp_jax.methods.base import GLOBAL, LOCAL, Method

__all__ = [
    "MethodSource",
    "ClassicalSource",
    "ModelSource",
    "resolve",
    "resolve_many",
    "from_params",
    "register_source",
    "known_methods",
    "method_sources",
    "normalise",
    "GLOBAL_MODEL_MARGINS",
]

# Models whose receptive field is global (selective scans over the whole image, attention):
# tiles of them are blended with this margin, in LR (MS) pixels; the README gives the
# measured tiled-vs-whole difference. Chosen: 32 MS pixels (128 PAN pixels at ratio 4).
GLOBAL_MODEL_MARGINS: dict[str, int] = {"fusionmamba": 32, "le_mamba": 32, "cmt": 32, "unfolding": 32, "panadapter": 32, "ssdiff": 32}

# Sensors of released weights whose file path does not say it (the weights README).
_RELEASED_SENSOR = {"fusionmamba": "WV3", "u2net": "WV3", "adknet": "WV3"}


def normalise(name: str) -> str:
    """Canonical spelling of a method name: lower case, ``-`` and spaces as ``_``."""
    return name.strip().lower().replace("-", "_").replace(" ", "_")


class MethodSource(Protocol):
    """A provider of methods (see module docstring)."""

    name: str
    options: tuple[str, ...]

    def names(self) -> list[str]:
        """Canonical method names this source provides."""
        ...

    def resolve(self, name: str, opts: Mapping[str, Any]) -> Method | None:
        """The method ``name`` (normalised), or None if not from this source; InputError
        for options it cannot use."""
        ...


def _provenance(method: str, label: str, source: str, **extra: str) -> dict[str, str]:
    tags = {"method": method, "method_label": label, "source": source, "software": f"pansharp_jax {__version__}"}
    tags["created"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    tags.update({k: v for k, v in extra.items() if v})
    return tags


class ClassicalSource:
    """The classical baselines (``fuse(None, lrms, pan, sensor=, ratio=)``), run in float64."""

    name = "classical"
    options: tuple[str, ...] = ()

    def names(self) -> list[str]:
        from pansharp_jax import classical

        return list(classical.METHODS)

    def resolve(self, name: str, opts: Mapping[str, Any]) -> Method | None:
        from pansharp_jax import classical

        by_toolbox = {normalise(v): k for k, v in classical.TOOLBOX_NAMES.items()}
        key = name if name in classical.METHODS else by_toolbox.get(name)
        if key is None:
            return None
        used = sorted(k for k, v in opts.items() if v is not None)
        if used:
            raise InputError(f"method '{key}' is classical and takes no {', '.join('--' + u for u in used)}")
        label = classical.TOOLBOX_NAMES.get(key, key.upper())

        def fuse_batch(lrms: np.ndarray, pan: np.ndarray, sensor: Any, ratio: int, lms: Any = None) -> np.ndarray:
            import jax

            del lms  # whole-image methods: tiles go through their streaming form instead
            fn = classical.METHODS[key]  # looked up at call time (tests patch it)
            with jax.enable_x64(True):  # classical methods are cheap: run them toolbox-exact
                return np.asarray(fn(None, lrms, pan, sensor=sensor.name, ratio=ratio), np.float64)

        def jax_fn(sensor: Any, ratio: int) -> Any:
            return functools.partial(classical.METHODS[key], None, sensor=sensor.name, ratio=int(ratio))

        streaming = _classical_streaming(key)
        return Method(
            key, label, fuse_batch, self.name,
            margin_fn=_classical_margin(key),
            receptive=LOCAL, streaming=streaming, origin="classical", tags=_provenance(key, label, self.name),
            jax_fn=jax_fn, dtype="float64",
        )  # fmt: skip


def _classical_streaming(key: str) -> Any:
    """``(sensor, ratio) -> StreamingMethod``: the method with its statistics streamed over tiles."""

    def make(sensor: Any, ratio: int) -> Any:
        from pansharp_jax.classical import streaming

        return streaming.streaming_method(key, sensor=sensor, ratio=int(ratio))

    return make


def _classical_margin(key: str) -> Any:
    def margin(ratio: int) -> int:
        from pansharp_jax.classical import streaming

        return int(streaming.streaming_method(key, sensor=None, ratio=int(ratio)).margin)

    return margin


# --------------------------------------------------------------------------- models
def _model_label(name: str) -> str:
    from pansharp_jax.models import registry

    desc = registry.get(name).description
    return desc.split(" (")[0].strip() if desc else name


def _weights_sensor(name: str, path: Path) -> str | None:
    from pansharp_jax.data.io import _sensor_from_name

    found = _sensor_from_name(path, path.parent)
    return found.name if found is not None else _RELEASED_SENSOR.get(name)


class ModelSource:
    """The learned models of the registry, with ``weights`` (released .pth) or ``ckpt``
    (a training workdir: its best checkpoint by ``checkpoint.best_metric``, else the latest)."""

    name = "model"
    options = ("weights", "ckpt", "precision", "matmul_precision")

    def names(self) -> list[str]:
        from pansharp_jax.models import registry

        return registry.names()

    def resolve(self, name: str, opts: Mapping[str, Any]) -> Method | None:
        if name not in self.names():
            return None
        used = {k: v for k, v in opts.items() if v is not None}
        other = sorted(k for k in used if k not in self.options)
        if other:
            raise InputError(f"method '{name}' takes no {', '.join('--' + o for o in other)}")
        policy = option_policy(used)  # a bad name fails before any weights are read
        label = _model_label(name)
        weights, ckpt = used.get("weights"), used.get("ckpt")
        if weights is not None and ckpt is not None:
            raise InputError(f"give --weights or --ckpt for {name}, not both")
        if weights is None and ckpt is None:
            raise InputError(
                f"method '{name}' is a learned model: give --weights FILE.pth (released weights) "
                "or --ckpt WORKDIR (a 'pansharp train' run)"
            )
        trained_sensor = None
        if weights is not None:
            from pansharp_jax.data.io import find_input
            from pansharp_jax.models import convert

            path = find_input(weights, "PANSHARP_WEIGHTS")
            if name not in convert.IMPORTABLE:
                raise InputError(f"no importer for released {label} weights ({path.name}); use --ckpt WORKDIR")
            params, cfg = convert.import_weights(name, path)
            origin = f"weights {path.name}"
            trained_sensor = _weights_sensor(name, path)
            tags = _provenance(name, label, self.name, weights=path.name, weights_sha256=sha256_file(path))
            trained_ratio = 4  # every released pan-sharpening checkpoint we import is ratio 4
        else:
            from pansharp_jax.train.restore import restore_params

            restored = restore_params(ckpt)
            params, cfg = restored.params, restored.model_config
            if normalise(str(cfg.name)) != name:
                raise InputError(f"--ckpt {ckpt} holds a {cfg.name} model, not {name}")
            ckpt_path = Path(restored.directory) / str(restored.step)
            origin = f"checkpoint {ckpt_path} ({restored.which}, step {restored.step})"
            data = restored.config.get("data", {}) or {}
            trained_sensor = data.get("sensor") or None
            trained_ratio = data.get("ratio")
            tags = _provenance(name, label, self.name, checkpoint=f"{Path(ckpt).name} step {restored.step} ({restored.which})")
        tags = {**tags, "trained_sensor": str(trained_sensor or ""), "trained_ratio": str(trained_ratio or "")}
        return from_params(name, params, cfg, label=label, origin=origin, trained_sensor=trained_sensor, tags=tags, precision=policy)


def from_params(
    name: str,
    params: Any,
    model_config: Any,
    *,
    label: str | None = None,
    origin: str = "parameters in memory",
    trained_sensor: str | None = None,
    tags: Mapping[str, str] | None = None,
    precision: Any = None,
) -> Method:
    """A :class:`Method` for a registered model with parameters at hand (a notebook's
    freshly trained ones, say): what :class:`ModelSource` builds from weights or a checkpoint.

    ``precision``: ``"fp32"`` (None, the default) or ``"bf16"``, or a
    :class:`~pansharp_jax.train.precision.Policy` (with its matmul precision): the precision
    ``fuse`` computes in (module docstring). The parameters stay as given.
    """
    key = normalise(name)
    label = label or _model_label(key)
    cfg = model_config
    policy = as_policy(precision)
    model_ratio = cfg.get("ratio") if hasattr(cfg, "get") else None
    tags, origin = precision_provenance(dict(tags) if tags is not None else _provenance(key, label, "model"), origin, policy)
    return Method(
        key, label, _model_fuse_batch(params, cfg, policy), "model",
        margin_fn=_model_margin(key, params, cfg), receptive=GLOBAL if key in GLOBAL_MODEL_MARGINS else LOCAL,
        bands=int(cfg.bands), ratio=int(model_ratio) if model_ratio is not None else None,
        trained_sensor=str(trained_sensor) if trained_sensor else None, origin=origin,
        tags=tags, jax_fn=_model_jax_fn(params, cfg, policy), **_model_sampler(params, cfg),
    )  # fmt: skip


def _fp32() -> Any:
    from pansharp_jax.train.precision import FP32

    return FP32


def as_policy(precision: Any = None, matmul_precision: str | None = None) -> Any:
    """A :class:`~pansharp_jax.train.precision.Policy` from ``precision`` (None, ``"fp32"``,
    ``"bf16"`` or a Policy) and ``matmul_precision`` (None: ``"default"``, or that of a given
    Policy); InputError naming ``precision`` / ``matmul_precision`` for other values."""
    from pansharp_jax.train.precision import Policy, get_policy

    if isinstance(precision, Policy):
        if matmul_precision is None:
            return precision
        precision = precision.precision
    return get_policy(precision or "fp32", matmul_precision or "default")


def precision_provenance(tags: dict[str, str], origin: str, policy: Any) -> tuple[dict[str, str], str]:
    """(``tags``, ``origin``) of a method fusing under ``policy``: a reduced precision is
    named in both (tags ``precision`` / ``matmul_precision``); unchanged for float32."""
    if policy == _fp32():
        return tags, origin
    tags = {**tags, "precision": policy.precision, "matmul_precision": policy.matmul_precision}
    return tags, f"{origin}, {policy.describe()}"


def network_fn(params: Any, cfg: Any, policy: Any, upsample: Any = None) -> Any:
    """``f(lrms, pan, lms=None) -> raw output`` of a registered network under ``policy``:
    :func:`pansharp_jax.models.fuse` in float32, :func:`fuse_with_policy` otherwise (``upsample``
    makes the missing ``lms``; default :func:`~pansharp_jax.classical.upsample_ms`)."""
    if policy != _fp32():
        return lambda lrms, pan, lms=None: fuse_with_policy(params, lrms, pan, model_config=cfg, policy=policy, lms=lms, upsample=upsample)
    from pansharp_jax.models import fuse

    return lambda lrms, pan, lms=None: fuse(params, lrms, pan, model_config=cfg, lms=lms)


def option_policy(opts: Mapping[str, Any]) -> Any:
    """The policy of a source's ``precision`` / ``matmul_precision`` options (absent: float32)."""
    return as_policy(opts.get("precision"), opts.get("matmul_precision"))


@functools.lru_cache(maxsize=1)
def _jitted_policy_fuse() -> Any:
    """``(module, params, lrms, pan, lms, *, ratio, policy, upsample) -> hrms`` jitted (all but
    the arrays static): ``lms`` (None: ``upsample(lrms, ratio)``, in float32), then
    :func:`~pansharp_jax.train.precision.apply_model` under ``policy``; float32 out."""
    import jax

    from pansharp_jax.train.precision import apply_model

    def run(module: Any, params: Any, lrms: Any, pan: Any, lms: Any, *, ratio: int, policy: Any, upsample: Any) -> Any:
        lms = upsample(lrms, ratio) if lms is None else lms
        return apply_model(module, params, lrms, pan, lms, policy=policy)

    return jax.jit(run, static_argnames=("module", "ratio", "policy", "upsample"))


def fuse_with_policy(
    params: Any, lrms: Any, pan: Any, *, model_config: Any, policy: Any, lms: Any = None, upsample: Any = None
) -> Any:
    """The network's raw output, (N, H, W, C) float32 on the [0, 1] scale, for float (N, h, w, C)
    ``lrms`` and (N, H, W, K) ``pan`` computed under ``policy`` (a
    :class:`~pansharp_jax.train.precision.Policy`). ``lms`` (N, H, W, C): None makes it with
    ``upsample(lrms, ratio)`` (default :func:`~pansharp_jax.classical.upsample_ms`) in float32."""
    import jax.numpy as jnp

    from pansharp_jax.classical import upsample_ms
    from pansharp_jax.models import registry

    module = registry.build_model(model_config)
    if isinstance(params, dict) and set(params) == {"params"}:
        params = params["params"]
    lrms, pan = jnp.asarray(lrms, jnp.float32), jnp.asarray(pan, jnp.float32)
    lms = None if lms is None else jnp.asarray(lms, jnp.float32)
    ratio = int(pan.shape[1] // max(lrms.shape[1], 1))
    fn = _jitted_policy_fuse()
    return fn(module, params, lrms, pan, lms, ratio=ratio, policy=policy, upsample=upsample or upsample_ms)


def _model_sampler(params: Any, cfg: Any) -> dict[str, Any]:
    """``{generative, sample_batch}`` of a model whose module has the sampler hook (module
    docstring); empty for deterministic models."""
    from pansharp_jax.models import registry

    module = registry.build_model(cfg)
    if not callable(getattr(type(module), "make_sampler", None)):
        return {}
    import jax

    tree = params["params"] if isinstance(params, dict) and set(params) == {"params"} else params
    sampler = module.make_sampler(tree)

    @functools.partial(jax.jit, static_argnames=("ratio", "samples", "steps"))
    def run(lrms: Any, pan: Any, lms: Any, rng: Any, *, ratio: int, samples: int, steps: int) -> Any:
        from pansharp_jax.classical import upsample_ms

        lms = upsample_ms(lrms, ratio) if lms is None else lms
        return sampler(lrms, pan, lms, rng, samples=samples, steps=steps)

    def sample_batch(lrms: Any, pan: Any, sensor: Any, ratio: int, *, samples: int, steps: int, rng: Any, lms: Any = None) -> Any:
        del sensor  # the network sees only the arrays
        lms = None if lms is None else np.asarray(lms, np.float32)
        lrms, pan = np.asarray(lrms, np.float32), np.asarray(pan, np.float32)
        mean, std = run(lrms, pan, lms, rng, ratio=int(ratio), samples=int(samples), steps=int(steps))
        return np.asarray(mean), np.asarray(std)

    return {"generative": True, "sample_batch": sample_batch}


def _model_fuse_batch(params: Any, cfg: Any, policy: Any) -> Any:
    def fuse_batch(lrms: np.ndarray, pan: np.ndarray, sensor: Any, ratio: int, lms: Any = None) -> np.ndarray:
        del sensor, ratio  # the network sees only the arrays
        lms = None if lms is None else np.asarray(lms, np.float32)
        lrms, pan = np.asarray(lrms, np.float32), np.asarray(pan, np.float32)
        return np.asarray(network_fn(params, cfg, policy)(lrms, pan, lms))

    return fuse_batch


def _model_jax_fn(params: Any, cfg: Any, policy: Any) -> Any:
    def make(sensor: Any, ratio: int) -> Any:
        del sensor, ratio
        net = network_fn(params, cfg, policy)
        return lambda lrms, pan: net(lrms, pan)

    return make


def _model_margin(name: str, params: Any, cfg: Any) -> Any:
    @functools.lru_cache(maxsize=8)
    def margin(ratio: int) -> int:
        if name in GLOBAL_MODEL_MARGINS:
            return GLOBAL_MODEL_MARGINS[name] * ratio
        from pansharp_jax.methods.receptive import receptive_radius
        from pansharp_jax.models import fuse

        radius = receptive_radius(
            lambda lr, p: fuse(params, lr, p, model_config=cfg), bands=int(cfg.bands), ratio=int(ratio)
        )
        if radius is None:  # global after all: blend with the documented default
            return 32 * ratio
        return radius + ratio  # one MS pixel more: the LR grid rounds outward

    return margin


# --------------------------------------------------------------------------- registry
_SOURCES: list[MethodSource] = [ClassicalSource(), ModelSource()]


def _mhif_source() -> MethodSource:
    from pansharp_jax.methods.mhif import MhifSource  # K-band guides; asked first so infn/feinfn get MHIF runners

    return MhifSource()


_SOURCES.insert(0, _mhif_source())


def method_sources() -> list[MethodSource]:
    """The registered sources, in the order :func:`resolve` asks them (a copy)."""
    return list(_SOURCES)


def register_source(source: MethodSource, *, first: bool = False) -> None:
    """Add a method source (asked after the built-in ones unless ``first``)."""
    if first:
        _SOURCES.insert(0, source)
    else:
        _SOURCES.append(source)


def known_methods() -> list[str]:
    """Every method name of every registered source, in source order."""
    out: list[str] = []
    for src in _SOURCES:
        out += [n for n in src.names() if n not in out]
    return out


def resolve(name: str, *, weights: str | Path | None = None, ckpt: str | Path | None = None, **options: Any) -> Method:
    """The method called ``name`` (case-insensitive; ``-``/``_`` alike; toolbox names work).

    Args:
      name: ``"gsa"``, ``"MTF-GLP-HPM"``, ``"fusionnet"``...
      weights: released PyTorch weights of a learned method (relative paths are also
        looked up under ``$PANSHARP_WEIGHTS``).
      ckpt: a ``pansharp train`` workdir.
      **options: options of other sources, e.g. ``precision="bf16"`` and
        ``matmul_precision="highest"`` for learned models (module docstring). None values
        count as not given.

    Raises:
      InputError: unknown method (the message lists the known ones), or options the
        method cannot use.
    """
    opts = {"weights": weights, "ckpt": ckpt, **options}
    key = normalise(name)
    for src in _SOURCES:
        mine = {k: v for k, v in opts.items() if v is not None and k in getattr(src, "options", ())}
        foreign = {k: v for k, v in opts.items() if v is not None and k not in getattr(src, "options", ())}
        method = src.resolve(key, {**mine, **foreign})
        if method is not None:
            return method
    raise InputError(f"unknown method '{name}'; known: {', '.join(known_methods())}")


def _learned(name: str) -> bool:
    key = normalise(name)
    return any(key in src.names() for src in _SOURCES if set(getattr(src, "options", ())) & {"weights", "ckpt"})


def _assign(kind: str, values: Sequence[str], learned: list[str]) -> dict[str, str]:
    """``NAME=PATH`` items (or one bare PATH for one learned method) -> {name: path}."""
    out: dict[str, str] = {}
    bare = []
    for v in values:
        head, sep, tail = v.partition("=")
        if sep and head.strip() and not Path(v).exists():
            key = normalise(head)
            if key not in learned:
                raise InputError(f"--{kind} {v}: {head} is not a learned method of the list ({', '.join(learned) or 'none'})")
            if key in out:
                raise InputError(f"--{kind} given twice for {key}")
            out[key] = tail.strip()
        else:
            bare.append(v)
    if bare:
        rest = [n for n in learned if n not in out]
        if len(bare) > 1 or len(rest) != 1:
            raise InputError(
                f"--{kind} {bare[0]}: say which method it is for, e.g. --{kind} {rest[0] if rest else 'fusionnet'}={bare[0]} "
                f"(learned methods in the list: {', '.join(learned) or 'none'})"
            )
        out[rest[0]] = bare[0]
    return out


def resolve_many(spec: str | Sequence[str] | None, *, weights: Sequence[str] = (), ckpts: Sequence[str] = ()) -> list[Method]:
    """The methods of a comma-separated list (None: every classical method).

    ``weights`` / ``ckpts`` items are ``NAME=PATH`` (``fusionnet=A.pth``; a comma-separated
    string of them is split too) or, when the list has exactly one learned method
    without one, a bare path for it. Raises InputError for unknown names, duplicates,
    learned methods without weights or checkpoint, and options that fit no listed method.
    """
    if spec is None:
        names = ClassicalSource().names()
    else:
        names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if not names:
        raise InputError("no methods given: use --methods a,b,c")
    keys = [normalise(n) for n in names]
    dups = sorted({k for k in keys if keys.count(k) > 1})
    if dups:
        raise InputError(f"method listed twice: {', '.join(dups)}")
    learned = [k for k in keys if _learned(k)]
    split = lambda vs: [p.strip() for v in vs for p in str(v).split(",") if p.strip()]  # noqa: E731
    w, c = split(weights), split(ckpts)
    if (w or c) and not learned:
        flags = ", ".join(f for f, v in (("--weights", w), ("--ckpt", c)) if v)
        raise InputError(f"{flags} given, but no method in the list is a learned model")
    by_w, by_c = _assign("weights", w, learned), _assign("ckpt", c, learned)
    both = sorted(set(by_w) & set(by_c))
    if both:
        raise InputError(f"give --weights or --ckpt for {both[0]}, not both")
    return [resolve(n, weights=by_w.get(k), ckpt=by_c.get(k)) for n, k in zip(names, keys, strict=True)]
