"""Input pipeline: lazy PanCollection reads, deterministic sharded sampling, resumable state, held-out regions."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from pansharp_jax.data import pipeline
from pansharp_jax.data.scene import Scene
from pansharp_jax.errors import InputError
from pansharp_jax.train.testing import synthetic_samples, write_synthetic_panc


@pytest.fixture(scope="module")
def panc_file(tmp_path_factory):
    return write_synthetic_panc(tmp_path_factory.mktemp("panc") / "train.h5", 12, size=16, bands=4, seed=3)


def test_panc_reads_one_sample_at_a_time_and_divides_by_scale(panc_file, monkeypatch):
    reads = []
    original = h5py.Dataset.__getitem__

    def recording_getitem(self, args, *rest, **kw):
        reads.append((self.name, args))
        return original(self, args, *rest, **kw)

    def refuse(*a, **k):
        raise AssertionError("a whole dataset was read")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording_getitem)
    monkeypatch.setattr(h5py.Dataset, "__array__", refuse)
    monkeypatch.setattr(h5py.Dataset, "read_direct", refuse)

    src = pipeline.PanCollectionSource(panc_file, scale=2047.0)
    assert len(src) == 12
    sample = src[5]
    batch = src.get_batch([7, 2])
    # every read is one integer index: one sample of one dataset, never a slice
    assert reads and all(isinstance(a, (int, np.integer)) for _, a in reads), reads
    assert {a for name, a in reads if name != "/pan"} <= {5, 7, 2}

    monkeypatch.undo()
    with h5py.File(panc_file, "r") as f:
        gt_dn = f["gt"][5]  # C x H x W in DN
        ms_dn = f["ms"][2]
    assert sample["gt"].dtype == np.float32 and sample["gt"].shape == (16, 16, 4)
    np.testing.assert_allclose(sample["gt"], gt_dn.transpose(1, 2, 0) / 2047.0, rtol=1e-6)
    assert batch["lrms"].shape == (2, 4, 4, 4) and batch["pan"].shape == (2, 16, 16, 1)
    np.testing.assert_allclose(batch["lrms"][1], ms_dn.transpose(1, 2, 0) / 2047.0, rtol=1e-6)
    assert 0.0 <= float(batch["pan"].min()) and float(batch["pan"].max()) <= 1.0


def test_panc_errors(panc_file, tmp_path):
    with pytest.raises(InputError, match="not found"):
        pipeline.PanCollectionSource(tmp_path / "missing.h5")
    with pytest.raises(InputError, match="dataset 'nope'"):
        pipeline.PanCollectionSource(panc_file, keys={"pan": "nope"})
    normalised = tmp_path / "norm.h5"
    with h5py.File(panc_file, "r") as f, h5py.File(normalised, "w") as g:
        for k in f:
            g[k] = f[k][()] / 2047.0
    with pytest.raises(InputError, match="normalised"):
        pipeline.PanCollectionSource(normalised, scale=2047.0)
    assert len(pipeline.PanCollectionSource(normalised, scale=1.0)) == 12


def _array_source(n: int) -> pipeline.ArraySource:
    s = synthetic_samples(n, size=8, bands=2, seed=0)
    return pipeline.ArraySource(s["lrms"], s["pan"], s["lms"], s["gt"], ratio=4)


def test_sampler_is_deterministic_per_seed_and_epoch():
    a = pipeline.EpochSampler(50, 10, seed=7, process_index=0, process_count=1)
    b = pipeline.EpochSampler(50, 10, seed=7, process_index=0, process_count=1)
    c = pipeline.EpochSampler(50, 10, seed=8, process_index=0, process_count=1)
    for epoch in range(3):
        np.testing.assert_array_equal(a.permutation(epoch), b.permutation(epoch))
        assert sorted(a.permutation(epoch)) == list(range(50))
    assert not np.array_equal(a.permutation(0), a.permutation(1))
    assert not np.array_equal(a.permutation(0), c.permutation(0))
    # an epoch's batches are disjoint
    seen = np.concatenate([a.global_indices(0, k) for k in range(a.batches_per_epoch)])
    assert len(np.unique(seen)) == len(seen) == 50

    src = _array_source(24)
    it1 = pipeline.BatchIterator(src, 8, seed=1, process_index=0, process_count=1)
    it2 = pipeline.BatchIterator(src, 8, seed=1, process_index=0, process_count=1)
    for _ in range(7):  # crosses two epoch boundaries (3 batches per epoch)
        x, y = next(it1), next(it2)
        assert set(x) == {"lrms", "pan", "lms", "gt"}
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
            assert x[k].dtype == np.float32 and x[k].shape[0] == 8


@pytest.mark.parametrize("process_count", [2, 3])
def test_process_shards_are_disjoint_and_cover_the_single_process_batches(process_count):
    n, batch = 40, 12
    single = pipeline.EpochSampler(n, batch, seed=5, process_index=0, process_count=1)
    shards = [
        pipeline.EpochSampler(n, batch, seed=5, process_index=p, process_count=process_count)
        for p in range(process_count)
    ]
    for epoch in range(2):
        covered = []
        for k in range(single.batches_per_epoch):
            parts = [s.local_indices(epoch, k) for s in shards]
            assert all(len(p) == batch // process_count for p in parts)
            joined = np.concatenate(parts)
            assert len(np.unique(joined)) == len(joined)  # disjoint across processes
            np.testing.assert_array_equal(joined, single.global_indices(epoch, k))  # same global batch
            covered.append(joined)
        allidx = np.concatenate(covered)
        assert len(np.unique(allidx)) == len(allidx) == single.batches_per_epoch * batch  # the epoch, once
    with pytest.raises(InputError, match="multiple of the process count"):
        pipeline.EpochSampler(n, 10, seed=0, process_index=0, process_count=3)


def test_iterator_state_resumes_to_the_same_batches():
    src = _array_source(30)
    it = pipeline.BatchIterator(src, 4, seed=11, process_index=1, process_count=2)  # 7 batches per epoch
    for _ in range(9):
        next(it)
    state = it.get_state()
    assert state == {"epoch": 1, "position": 2, "seed": 11}
    expected = [next(it) for _ in range(8)]  # crosses into epoch 2
    resumed = pipeline.BatchIterator(src, 4, seed=0, process_index=1, process_count=2, state=state)
    for want in expected:
        got = next(resumed)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    assert resumed.get_state() == it.get_state()
    with pytest.raises(InputError, match="lacks"):
        resumed.set_state({"epoch": 0})


def test_iterate_in_order_pads_the_last_batch():
    src = _array_source(10)
    got = [(p, b, v) for p in range(2) for b, v in pipeline.iterate_in_order(src, 4, process_index=p, process_count=2)]
    valid = [v for p, _, v in got if p == 0]
    assert [list(v) for v in valid] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    last_p1 = [b for p, b, _ in got if p == 1][-1]  # rows 10, 11 of the last global batch: padding (= sample 9)
    np.testing.assert_array_equal(last_p1["gt"][0], src[9]["gt"])


def _fullres_scene(seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    ms = rng.uniform(0.1, 0.9, (64, 64, 4))  # the full-resolution MS (becomes the GT)
    pan = rng.uniform(0.1, 0.9, (256, 256, 1))
    return Scene(lrms=ms, pan=pan, sensor="QB", ratio=4, bits=11, name="synthetic")


def test_wald_patches_never_touch_the_held_out_region():
    scene = _fullres_scene()
    train, val = pipeline.wald_patch_sources(
        scene, patch=16, stride=8, holdout_side="right", holdout_fraction=0.25, val_patch=16
    )
    hold = pipeline.Box(0, 64, 48, 64)
    assert val.region == hold and train.region == pipeline.Box(0, 64, 0, 48)
    assert len(train) == 7 * 5 and len(val) == 4
    for r0, r1, c0, c1 in train.boxes:
        assert not pipeline.Box(int(r0), int(r1), int(c0), int(c1)).overlaps(hold)
        np.testing.assert_array_equal(train.arrays["gt"][0].shape, (16, 16, 4))
    for (r0, r1, c0, c1), gt in zip(val.boxes, val.arrays["gt"], strict=True):
        assert pipeline.Box(int(r0), int(r1), int(c0), int(c1)).overlaps(hold) and c0 >= 48
        np.testing.assert_allclose(gt, scene.lrms[r0:r1, c0:c1], rtol=1e-6)  # the original MS is the GT
    b = train.boxes[3]
    np.testing.assert_allclose(train.arrays["gt"][3], scene.lrms[b[0] : b[1], b[2] : b[3]], rtol=1e-6)
    assert train.arrays["lrms"].shape == (35, 4, 4, 4) and train.arrays["pan"].shape == (35, 16, 16, 1)

    # no leakage, even through the MTF filter: changing every held-out pixel (MS and PAN)
    # leaves every training array bit-identical
    other = _fullres_scene()
    other.lrms[:, 48:] = np.random.default_rng(9).uniform(0.1, 0.9, other.lrms[:, 48:].shape)
    other.pan[:, 48 * 4 :] = 0.5
    train2, val2 = pipeline.wald_patch_sources(
        other, patch=16, stride=8, holdout_side="right", holdout_fraction=0.25, val_patch=16
    )
    for k in train.arrays:
        np.testing.assert_array_equal(train.arrays[k], train2.arrays[k])
    assert not np.array_equal(val.arrays["gt"], val2.arrays["gt"])


def test_split_holdout_sides():
    for side, want in [
        ("left", pipeline.Box(0, 40, 0, 12)),
        ("top", pipeline.Box(0, 8, 0, 48)),
        ("bottom", pipeline.Box(32, 40, 0, 48)),
    ]:
        train, hold = pipeline.split_holdout(40, 48, side, 0.25, multiple=4)
        assert hold == want and not train.overlaps(hold)
    with pytest.raises(InputError, match="side"):
        pipeline.split_holdout(40, 48, "middle", 0.25)


def test_build_sources_from_config(panc_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PANSHARP_DATA", str(panc_file.parent))
    train, val, info = pipeline.build_sources(
        {"kind": "panc", "train": panc_file.name, "val": "", "scale": 2047.0, "sensor": "WV3"}
    )
    assert isinstance(train, pipeline.PanCollectionSource) and val is None
    assert (info.sensor, info.ratio, info.max_dn, info.rgb) == ("WV3", 4, 2047.0, (4, 2, 1))
    s = synthetic_samples(6, size=8, bands=4)
    np.savez(tmp_path / "a.npz", lrms=s["lrms"], pan=s["pan"], gt=s["gt"])
    train, val, _ = pipeline.build_sources(
        {"kind": "arrays", "train": str(tmp_path / "a.npz"), "val": str(tmp_path / "a.npz")}
    )
    assert len(train) == 6 and train[0]["lms"].shape == (8, 8, 4)
    with pytest.raises(InputError, match="data.kind"):
        pipeline.build_sources({"kind": "tfds"})


def test_wald_scene_from_real_full_resolution_file(data_dir):
    from pansharp_jax.data.io import load_scene

    scene = load_scene(data_dir / "fr" / "wv3_zpnn_example.mat")  # MS 32 x 32 x 8, PAN 128 x 128
    train, val = pipeline.wald_patch_sources(scene, patch=8, stride=4, holdout_fraction=0.25)
    assert val.region == pipeline.Box(0, 32, 24, 32)
    assert all(c1 <= 24 for *_, c1 in train.boxes)
    assert train.arrays["lrms"].shape[1:] == (2, 2, 8) and train.arrays["gt"].shape[1:] == (8, 8, 8)


def test_dihedral_augmentation_draws_all_eight_symmetries_alike_in_every_array_and_resumes():
    src = _array_source(30)
    plain = pipeline.BatchIterator(src, 4, seed=5)
    aug = pipeline.BatchIterator(src, 4, seed=5, augment="dihedral")
    seen = set()
    for _ in range(12):
        ops = aug.peek_dihedral()
        want, got = next(plain), next(aug)
        for i, op in enumerate(ops):
            seen.add(int(op))
            for k in ("lrms", "pan", "lms", "gt"):
                a = want[k][i]
                a = a[::-1] if op >= 4 else a  # written out: row flip, then op % 4 quarter turns
                for _ in range(op % 4):
                    a = np.swapaxes(a, 0, 1)[::-1]
                np.testing.assert_array_equal(got[k][i], a)
    assert seen == set(range(8))
    state = aug.get_state()
    expected = [next(aug) for _ in range(3)]
    resumed = pipeline.BatchIterator(src, 4, seed=5, augment="dihedral", state=state)
    for want in expected:
        got = next(resumed)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    with pytest.raises(InputError, match="data.augment"):
        pipeline.BatchIterator(src, 4, augment="flip")
    with pytest.raises(InputError, match="square"):
        pipeline.dihedral({"gt": np.zeros((1, 4, 6, 1))}, np.array([1]))


@pytest.mark.parametrize("override,match", [({"data.augment": "flip"}, "data.augment must be one of"),
                                            ({"data.augment": "dihedral", "cluster_cache.enabled": True}, "cluster_cache")])  # fmt: skip
def test_trainer_refuses_bad_augmentation_before_the_workdir_is_made(tmp_path, override, match):
    from pansharp_jax.train.cli_args import load_config
    from pansharp_jax.train.loop import train

    from pathlib import Path

    config = load_config(f"{Path(__file__).resolve().parents[1] / 'configs' / 'fusionnet_wv3.py'}:smoke")
    for k, v in override.items():
        section, key = k.split(".")
        config[section][key] = v
    with pytest.raises(InputError, match=match):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
