"""CANNet's per-sample k-means cluster cache in the trainer (``pansharp_jax/train/cluster_cache.py``).

* the trainer's steps (``ClusterCacheTrainer.train_step``, as ``train()`` calls them, on 2
  simulated devices so the indices travel sharded like the batch): the first epoch stores every
  training sample's indices for rb1, rb2 and rb3 under the right sample ids; a 'ready' step's
  loss equals the 'ready' step given the cached indices explicitly, and poisoning a cached entry
  changes the trainer's step to exactly the step given the poisoned indices; each mode compiles
  once;
* ``train()``: a run killed after its step-3 checkpoint (mid-epoch 2, an 'update' epoch:
  k-means warm-started from the cached rows, stored again) and resumed ends with the state
  (params, Adam moments, step, key) and the cache (every sample, every layer) of an
  uninterrupted run, bit for bit; the resumed step is fed the restored rows;
* switched off (the default), a CANNet run is the plain train-step loop bit for bit and its
  checkpoints hold no cache; FusionNet trains as before (also from a config without the
  ``cluster_cache`` group), its batches carry no ids, and it refuses the switch.

Each test trains in a fresh Python process with cheap XLA compilation
(``JAX_DISABLE_MOST_OPTIMIZATIONS``), the RBG PRNG, the initial parameters drawn on the host
(``loop.init_state`` replaced: CANNet's ``module.init`` takes longer to compile than a train
step) and a per-test persistent compilation cache, so that the several ``train()`` runs of one
test compile each program once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PRELUDE = r"""
import json, sys
from pathlib import Path
import jax, numpy as np
from pansharp_jax.data import pipeline
from pansharp_jax.models import registry
from pansharp_jax.train import loop, parallel
from pansharp_jax.train.loop import train
from pansharp_jax.train.optim import make_optimizer
from pansharp_jax.train.state import TrainState
from pansharp_jax.train.testing import tiny_config, write_synthetic_panc

N, B = 8, 4  # 8 samples, batch 4: an epoch is 2 steps
tmp = Path(sys.argv[1])
h5 = write_synthetic_panc(tmp / "train.h5", N, seed=0)


def host_init_state(config, example, mesh):
    # loop.init_state with the parameters drawn on the host: CANNet's module.init takes longer to
    # compile than a train step (as in tests/test_cannet.py); the rest of the trainer is untouched
    model = registry.build_model(config.model)
    tx, schedule = make_optimizer(config.optim, int(config.steps))
    ex = {k: np.asarray(example[k][:1]) for k in ("lrms", "pan", "lms")}
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), ex["lrms"], ex["pan"], ex["lms"])["params"]
    draw = np.random.default_rng(int(config.seed))
    params = jax.tree.map(lambda s: draw.uniform(-0.2, 0.2, s.shape).astype(np.float32), shapes)
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx, rng=jax.random.PRNGKey(int(config.seed)))
    return parallel.replicate(state, mesh), schedule


loop.init_state = host_init_state


def cannet_config(steps, policy=None):
    c = tiny_config(str(h5), steps=steps, batch_size=B)
    c.model = registry.default_config("cannet")
    c.model.update(bands=4, channels=4, cluster_num=4, kmeans_iters=3)
    if policy is not None:
        c.cluster_cache.enabled, c.cluster_cache.policy = True, policy
    return c


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(parallel.to_host(tree))]


def same(a, b):
    a, b = leaves(a), leaves(b)
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


res = {}
"""


def _run(script: str, tmp_path: Path, *, devices: int = 1, timeout: int = 300) -> dict:
    """Run ``PRELUDE + script`` in a fresh process; returns the dict it prints as ``RESULT {...}``."""
    drop = ("XLA_FLAGS", "PANSHARP_COORDINATOR", "PANSHARP_NUM_PROCESSES", "PANSHARP_PROCESS_ID", "JAX_COORDINATOR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_DISABLE_MOST_OPTIMIZATIONS="1",
        JAX_DEFAULT_PRNG_IMPL="unsafe_rbg",
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    code = PRELUDE + script + "\nprint('RESULT ' + json.dumps(res))\n"
    r = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    line = [s for s in r.stdout.splitlines() if s.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


FILL_AND_FEED = r"""
from pansharp_jax.train import cluster_cache, losses
from pansharp_jax.train.state import step_rng

# the trainer's per-step calls (loop.py) without the rest of train(), on 2 devices, with batches
# from the trainer's iterator
res["devices"] = jax.device_count()
c = cannet_config(3, policy="1000")  # epochs of 2 steps: 1 'init' (steps 0-1), 2 'ready' (step 2)
mesh = parallel.make_mesh()
src = pipeline.PanCollectionSource(h5)
shard = lambda a: parallel.shard_batch(a, mesh)
state, schedule = loop.init_state(c, src.get_batch([0]), mesh)
cl = cluster_cache.from_config(c, mesh, loss=losses.loss_from_config(c), schedule=schedule, num_examples=len(src))
base = parallel.to_host(state.rng)
it = pipeline.BatchIterator(src, B, seed=c.seed)
saved, logged = [], []
for step in range(3):
    ids = cl.batch_ids(it)
    batch = shard(next(it))
    saved.append((parallel.to_host(state), ids, batch))  # to rerun this step
    state, metrics = cl.train_step(state, batch, ids, step, step_rng(base, step))
    logged.append(float(metrics["loss"]))
    if step == 1:  # after the first epoch
        epoch1 = cl.state_dict()
        res["epoch1"] = {
            k: [v["ids"].tolist(), list(v["indices"].shape), str(v["indices"].dtype), int(v["indices"].max())]
            for k, v in epoch1.items()
        }
res["mode_counts"] = dict(cl.mode_counts)


def rerun(step, mode, cached=None):
    host, ids, batch = saved[step]
    args = () if cached is None else (shard(cached),)
    return cl.steps[mode](parallel.replicate(host, mesh), batch, step_rng(base, step), *args)


def rows(layers, ids):
    return {k: v["indices"][np.searchsorted(v["ids"], ids)].astype(np.int32) for k, v in layers.items()}


# step 0 ('init'): the stored rows are its fresh k-means, under its samples' ids
fresh = parallel.to_host(rerun(0, "init")[2])
ids0 = saved[0][1][0]
res["init_rows"] = sorted(fresh) == sorted(epoch1) and all(
    np.array_equal(fresh[k], rows(epoch1, ids0)[k]) for k in fresh
)

# step 2 ('ready'): the loss equals the step given the cached indices explicitly ...
host, ids, batch = saved[2]
res["logged"] = logged[2]
res["explicit"] = float(rerun(2, "ready", cl.cache.get(ids[0]))[1]["loss"])
# ... and a poisoned cached entry (all its pixels in cluster 0; a relabelling would be the same
# partition) changes the trainer's step to exactly the step given the poisoned indices
res["poisoned_was"] = [int(np.unique(cl.cache.get(ids[0][:1])[k]).size) for k in ("rb1", "rb2", "rb3")]
cl.cache.put(ids[0][:1], {k: np.zeros((1, n), np.int32) for k, n in (("rb1", 256), ("rb2", 64), ("rb3", 16))})
poisoned = cl.train_step(parallel.replicate(host, mesh), batch, ids, 2, step_rng(base, 2))
res["poisoned_trainer"] = float(poisoned[1]["loss"])
res["poisoned_explicit"] = float(rerun(2, "ready", cl.cache.get(ids[0]))[1]["loss"])
res["compiles"] = {m: f._cache_size() for m, f in cl.steps.items()}
"""


def test_first_epoch_fills_the_cache_and_ready_steps_feed_it(tmp_path):
    res = _run(FILL_AND_FEED, tmp_path, devices=2)
    assert res["devices"] == 2
    sizes = {"rb1": 16 * 16, "rb2": 8 * 8, "rb3": 4 * 4}  # 16 x 16 PAN, two 2x downsamplings
    assert sorted(res["epoch1"]) == sorted(sizes)
    for layer, (ids, shape, dtype, top) in res["epoch1"].items():
        assert ids == list(range(8)) and shape == [8, sizes[layer]] and dtype == "uint8" and top < 4, layer
    assert res["init_rows"]
    assert res["mode_counts"] == {"init": 2, "update": 0, "ready": 1}
    logged = res["logged"]
    print(f"step 3 ('ready'): loss {logged}, explicit {res['explicit']}, poisoned {res['poisoned_trainer']}")
    assert res["explicit"] == logged
    assert min(res["poisoned_was"]) > 1  # the entry had several clusters per layer
    assert res["poisoned_trainer"] != logged and res["poisoned_trainer"] == res["poisoned_explicit"]
    assert res["compiles"] == {"init": 1, "update": 0, "ready": 1}  # one compilation per mode, none per step


RESUME = r"""
import shutil
from pansharp_jax.train.checkpoint import Checkpointer

c = cannet_config(4, policy="1")  # epoch 1 (steps 1-2) 'init', then 'update' every epoch (3-4)
c.checkpoint.every, c.checkpoint.keep, c.checkpoint.async_save = 3, 10, True
straight = train(c, tmp / "straight")


def later(folder, names):  # checkpoints after step 3
    return [n for n in names if Path(folder).name == "checkpoints" and n.isdigit() and int(n) > 3]


# a run killed right after its step-3 checkpoint leaves the straight run's folder without the
# later checkpoints; its cache then holds epoch-1 rows and the rows step 3 refreshed
shutil.copytree(tmp / "straight", tmp / "killed", ignore=later)
res["ckpt_items"] = sorted(p.name for p in (tmp / "killed" / "checkpoints" / "3").iterdir() if p.is_dir())
resumed = train(c, tmp / "killed", resume=True)
res["start"] = resumed.start_step
res["modes"] = [dict(r.clusters.mode_counts) for r in (straight, resumed)]
res["state_equal"] = same(straight.state.arrays(), resumed.state.arrays())
a, b = straight.clusters.state_dict(), resumed.clusters.state_dict()
res["cache"] = {k: [v["ids"].tolist(), list(v["indices"].shape)] for k, v in a.items()}
res["cache_equal"] = sorted(a) == sorted(b) and all(
    np.array_equal(a[k][f], b[k][f]) for k in a for f in ("ids", "indices")
)
res["losses"] = [[m["loss"] for _, m in straight.history], [m["loss"] for _, m in resumed.history]]
ck = Checkpointer(tmp / "killed" / "checkpoints", async_save=False)
epoch1 = ck.restore_clusters(3)
res["update_moved"] = int(sum(np.sum(a[k]["indices"] != epoch1[k]["indices"]) for k in a))  # by the resumed step
ck.close()
"""


def test_killed_run_resumes_to_equal_params_and_cache(tmp_path):
    res = _run(RESUME, tmp_path)
    assert res["ckpt_items"] == ["clusters", "config", "data", "state"]
    straight, resumed = res["modes"]
    assert straight == {"init": 2, "update": 2, "ready": 0}
    assert res["start"] == 3 and resumed == {"init": 0, "update": 1, "ready": 0}  # fed the restored rows
    assert res["state_equal"]  # params, Adam moments, step and key: bit-identical
    sizes = {"rb1": 256, "rb2": 64, "rb3": 16}
    assert res["cache"] == {k: [list(range(8)), [8, n]] for k, n in sizes.items()}  # every sample, every layer
    assert res["cache_equal"]
    assert res["losses"][1] == res["losses"][0][3:]
    print(f"resumed from step 3: state and cache equal; the resumed 'update' step moved {res['update_moved']} indices")


OFF = r"""
import pytest
from pansharp_jax.errors import InputError
from pansharp_jax.train import losses
from pansharp_jax.train.checkpoint import Checkpointer
from pansharp_jax.train.state import step_rng
from pansharp_jax.train.step import make_train_step

mesh = parallel.make_mesh()
src = pipeline.PanCollectionSource(h5)


def plain_loop(c):
    # the trainer's loop before the cache existed: init_state, make_train_step, BatchIterator, step_rng
    state, schedule = loop.init_state(c, src.get_batch([0]), mesh)
    step = make_train_step(mesh, loss=losses.loss_from_config(c), schedule=schedule)
    it = pipeline.BatchIterator(src, int(c.batch_size), seed=int(c.seed))
    base, keys = parallel.to_host(state.rng), set()
    for s in range(int(c.steps)):
        local = next(it)
        keys |= set(local)
        state, _ = step(state, parallel.shard_batch(local, mesh), step_rng(base, s))
    return state, sorted(keys)


c = cannet_config(4)
assert c.cluster_cache.enabled is False  # the default
r = train(c, tmp / "cannet")
ref, _ = plain_loop(c)
res["cannet_same"] = same(r.state.arrays(), ref.arrays())
res["cannet_clusters"] = r.clusters is None
ck = Checkpointer(tmp / "cannet" / "checkpoints", async_save=False)
res["cannet_ckpt_clusters"] = ck.restore_clusters(4)
res["cannet_items"] = sorted(p.name for p in (tmp / "cannet" / "checkpoints" / "4").iterdir() if p.is_dir())
ck.close()

f = tiny_config(str(h5), steps=4, batch_size=B)
r = train(f, tmp / "fusionnet")
ref, keys = plain_loop(f)
res["fusionnet_same"] = same(r.state.arrays(), ref.arrays())
res["batch_keys"] = keys
old = tiny_config(str(h5), steps=4, batch_size=B)
del old["cluster_cache"]  # a config from before the switch existed
res["old_config_same"] = same(train(old, tmp / "old").state.arrays(), ref.arrays())
f.cluster_cache.enabled = True
with pytest.raises(InputError, match="k-means layers") as e:
    train(f, tmp / "refused")
res["refused"] = str(e.value)
"""


def test_cache_off_is_the_plain_loop_and_other_models_are_unaffected(tmp_path):
    res = _run(OFF, tmp_path)
    assert res["cannet_same"] and res["cannet_clusters"]
    assert res["cannet_ckpt_clusters"] is None and res["cannet_items"] == ["config", "data", "state"]
    assert res["fusionnet_same"] and res["old_config_same"]
    assert res["batch_keys"] == ["gt", "lms", "lrms", "pan"]
    assert "fusionnet" in res["refused"]


def test_policy_epochs_and_batch_ids():
    import numpy as np
    import pytest

    from pansharp_jax.data import pipeline
    from pansharp_jax.errors import InputError
    from pansharp_jax.train.cluster_cache import epoch_of_step, parse_policy

    official = [[10, 1], [100, 10], [300, 20], 50]
    assert parse_policy("10:1,100:10,300:20,50") == official == parse_policy(((10, 1), (100, 10), (300, 20), 50))
    assert parse_policy("2") == 2 == parse_policy(2) and parse_policy("5:1") == [[5, 1]]
    for bad in ("0", "", "ten", "10:1,5,20:2", "10:0,5", True, [[1, 2, 3]]):
        with pytest.raises(InputError, match="cluster_cache.policy"):
            parse_policy(bad)

    # epoch = step // (N // B) + 1 is the iterator's epoch + 1 (the incomplete last batch is dropped)
    n, b = 11, 3
    z = np.zeros((n, 4, 4, 1), np.float32)
    it = pipeline.BatchIterator(pipeline.ArraySource(z[:, :1, :1], z, z, z, ratio=4), b, seed=0)
    seen = []
    for step in range(9):
        assert epoch_of_step(step, n, b) == it.epoch + 1 == step // 3 + 1
        ids = it.peek_global_indices()
        assert np.array_equal(ids, it.peek_indices())  # one process: the global batch is this one's
        assert sorted(next(it)) == ["gt", "lms", "lrms", "pan"]  # the batch itself is unchanged
        seen.append(ids)
    assert len(set(np.concatenate(seen[:3]).tolist())) == 9  # an epoch: distinct samples


def test_cannet_configs_turn_the_cache_on_and_others_do_not():
    from pansharp_jax.train.cli_args import load_config
    from pansharp_jax.train.cluster_cache import parse_policy

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.py"))
    for path in configs:
        if path.stem.startswith("apla_"):  # the video fine-tuner's configs have no trainer sections
            continue
        c = load_config(path)
        if path.stem == "default":
            assert c.cluster_cache.enabled is False
        elif c.model.name == "cannet":
            assert c.cluster_cache.enabled is True, path.stem
            assert parse_policy(c.cluster_cache.policy) == [[10, 1], [100, 10], [300, 20], 50]
        else:
            assert c.cluster_cache.enabled is False, path.stem
    c = load_config(configs[0].with_name("cannet_wv3.py"), ["--config.cluster_cache.policy=5"])
    assert parse_policy(c.cluster_cache.policy) == 5
