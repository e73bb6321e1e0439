"""Released PyTorch weights: the torch-free reader, the conversion, and the imported networks.

* The reader gives exactly the tensor names and shapes of each file's PARAMS.txt listing
  (and the unique parameter counts there); corrupt, truncated or foreign files raise
  InputError; a pickle naming arbitrary callables runs none of them.
* Each released WV3 checkpoint, imported and run through ``models.fuse`` on the real
  WV3 scene, beats EXP and GSA in Q2n, SAM and ERGAS.
* With PyTorch installed: the networks written here in plain PyTorch from the published
  definitions, loaded with the same state dicts, give the same outputs (max abs diff
  <= 1e-5 on the [0, 1] scale), for the released weights and for random ones (LAGNet too).
"""

from __future__ import annotations

import math
import pickle
import re
import shutil
import struct
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io as sio
import scipy.ndimage

from pansharp_jax import classical
from pansharp_jax.data import wald
from pansharp_jax.errors import InputError
from pansharp_jax.metrics import evaluate_reduced
from pansharp_jax.models import fuse, registry
from pansharp_jax.models.convert import convert, import_weights, infer_config, load_torch_state_dict
from pansharp_jax.models.torch_reader import Opaque, read_torch_checkpoint

# weights/<method>/<sensor>/<file>, as released in the DLPan-Toolbox
RELEASED = {
    "pnn": "pnn.pth",
    "pannet": "pannet.pth",
    "dicnn": "dicnn1.pth",
    "msdcnn": "msdcnn.pth",
    "drpnn": "drpnn.pth",
    "fusionnet": "fusionnet.pth",
}
SENSORS = ("QB", "WV2", "WV3", "WV4")
BASELINES = ("pnn", "pannet", "dicnn", "msdcnn", "drpnn", "fusionnet")


def _released_file(weights_dir: Path, method: str, sensor: str) -> Path:
    name = "panet.pth" if (method, sensor) == ("pannet", "QB") else RELEASED[method]  # sic, as released
    return weights_dir / method / sensor / name


def _params_listing(weights_dir: Path, method: str) -> dict[str, dict]:
    """PARAMS.txt -> {relative file: {'tensors': [(name, shape, alias)], 'unique': int}}."""
    out: dict[str, dict] = {}
    current = None
    for line in (weights_dir / method / "PARAMS.txt").read_text().splitlines():
        if line.startswith("FILE "):
            current = out.setdefault(line[5:].strip(), {"tensors": [], "unique": None})
        elif current is not None and (m := re.search(r"unique model parameters: (\d+)", line)):
            current["unique"] = int(m.group(1))
        elif current is not None and (m := re.match(r"^  (\S+)  \[([\d, ]*)\](  \(alias)?", line)):
            shape = tuple(int(v) for v in m.group(2).split(",") if v.strip())
            current["tensors"].append((m.group(1), shape, bool(m.group(3))))
    return out


# ---------------------------------------------------------------------------- reader


@pytest.mark.parametrize("method", BASELINES)
def test_reader_gives_params_txt_names_and_shapes(weights_dir: Path, method: str) -> None:
    listing = _params_listing(weights_dir, method)
    assert set(listing) == {f"{s}/{_released_file(weights_dir, method, s).name}" for s in SENSORS}
    for rel, info in listing.items():
        path = weights_dir / method / rel
        unique = load_torch_state_dict(path)
        everything = load_torch_state_dict(path, drop_aliases=False)
        assert [(k, v.shape) for k, v in everything.items()] == [(n, s) for n, s, _ in info["tensors"]], rel
        assert [(k, v.shape) for k, v in unique.items()] == [(n, s) for n, s, a in info["tensors"] if not a], rel
        assert sum(v.size for v in unique.values()) == info["unique"], rel
        assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in unique.values())
        for name, _, alias in info["tensors"]:
            if alias:  # backbone.N.* views the same bytes as res{N+1}.*
                twin = re.sub(r"^backbone\.(\d+)\.", lambda m: f"res{int(m.group(1)) + 1}.", name)
                np.testing.assert_array_equal(everything[name], everything[twin])


def test_reader_rejects_missing_empty_and_foreign_files(tmp_path: Path) -> None:
    cases = {
        "missing.pth": None,
        "empty.pth": b"",
        "text.pth": b"hello, not a checkpoint\n" * 4,
        "plain_pickle.pth": pickle.dumps({"a": 1}, protocol=2),
    }
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    with zipfile.ZipFile(tmp_path / "foreign.zip", "w") as zf:
        zf.writestr("readme.txt", "a zip, but not a checkpoint")
    expected = {
        "missing.pth": "no such file",
        "empty.pth": "empty file",
        "text.pth": "not a PyTorch checkpoint",
        "plain_pickle.pth": "not a PyTorch checkpoint|corrupt",
        "foreign.zip": "not a PyTorch checkpoint",
    }
    for name, match in expected.items():
        with pytest.raises(InputError, match=match) as err:
            load_torch_state_dict(tmp_path / name)
        assert "\n" not in str(err.value) and name in str(err.value)


def test_reader_rejects_truncated_and_corrupt_released_file(weights_dir: Path, tmp_path: Path) -> None:
    src = weights_dir / "dicnn" / "WV3" / "dicnn1.pth"
    data = src.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 100):
        bad = tmp_path / f"cut{cut}.pth"
        bad.write_bytes(data[:cut])
        with pytest.raises(InputError, match="corrupt or truncated") as err:
            load_torch_state_dict(bad)
        assert "\n" not in str(err.value) and bad.name in str(err.value)
    # flip bytes inside the stored tensor data: the zip CRC check fails
    with zipfile.ZipFile(src) as zf:
        info = next(i for i in zf.infolist() if "/data/" in i.filename and i.file_size > 1000)
    flipped = bytearray(data)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])  # local header
    start = info.header_offset + 30 + name_len + extra_len + 10
    flipped[start : start + 8] = bytes(b ^ 0xFF for b in flipped[start : start + 8])
    bad = tmp_path / "flipped.pth"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_torch_state_dict(bad)


def test_reader_runs_no_code_from_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (shutil.copy, (__file__, str(marker)))

    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
        zf.writestr("archive/version", "3\n")
    obj = read_torch_checkpoint(tmp_path / "evil.pth")
    assert isinstance(obj["w"], Opaque) and obj["w"]._qualname == "shutil.copy"
    assert not marker.exists()
    with pytest.raises(InputError, match="no state dict"):
        load_torch_state_dict(tmp_path / "evil.pth")


def test_torch_saved_formats_round_trip(tmp_path: Path) -> None:
    """zip and legacy formats, dtypes, views, shared storages and nested dicts, vs torch.load."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    sd = {
        "a": base,
        "a_alias": base,  # same tensor object
        "a_view": base.view(30),  # same bytes, other shape: not an alias
        "t": base.t(),  # non-contiguous
        "row": base[2],  # offset view
        "half": torch.randn(3, 4, generator=g).half(),
        "bf16": torch.randn(7, generator=g).bfloat16(),
        "long": torch.arange(5),
        "bool": torch.tensor([True, False]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }
    for legacy in (False, True):
        path = tmp_path / f"ckpt_{legacy}.pth"
        torch.save({"model_state": sd, "epoch": 7}, path, _use_new_zipfile_serialization=not legacy)
        got = load_torch_state_dict(path)
        everything = load_torch_state_dict(path, drop_aliases=False)
        assert "a_alias" not in got and list(everything) == list(sd)
        for k, v in sd.items():
            want = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
            assert everything[k].dtype == want.dtype and everything[k].shape == want.shape, k
            np.testing.assert_array_equal(everything[k], want, err_msg=k)
        assert read_torch_checkpoint(path)["epoch"] == 7


# ---------------------------------------------------------------------------- conversion


def test_convert_infers_sizes_and_rejects_bad_state_dicts(weights_dir: Path) -> None:
    for sensor, bands in zip(SENSORS, (4, 8, 8, 4)):
        for method in BASELINES:
            params, cfg = import_weights(method, _released_file(weights_dir, method, sensor))
            assert cfg.bands == bands and cfg.name == method
            assert cfg.to_dict() == {**registry.default_config(method).to_dict(), "bands": bands}
            n = sum(math.prod(np.shape(x)) for x in jax.tree.leaves(params))
            assert n == sum(v.size for v in load_torch_state_dict(_released_file(weights_dir, method, sensor)).values())
    sd = load_torch_state_dict(_released_file(weights_dir, "pnn", "WV3"))
    with pytest.raises(InputError, match="no weight converter"):
        convert("unet", sd)
    with pytest.raises(InputError, match="8 bands, not 4"):
        convert("pnn", sd, bands=4)
    with pytest.raises(InputError, match="missing"):
        convert("pnn", {k: v for k, v in sd.items() if k != "conv3.weight"})
    with pytest.raises(InputError, match="lacks"):
        convert("pnn", {k: v for k, v in sd.items() if k != "conv2.bias"})
    with pytest.raises(InputError, match="unexpected"):
        convert("pnn", {**sd, "conv4.weight": sd["conv3.weight"]})
    with pytest.raises(InputError, match="shape"):
        convert("pnn", {**sd, "conv2.bias": np.zeros(31, np.float32)})
    with pytest.raises(InputError, match="not a dicnn state dict"):  # msdcnn also has conv1 and conv3
        convert("dicnn", load_torch_state_dict(_released_file(weights_dir, "msdcnn", "WV3")))


def _wv3_scene(data_dir: Path) -> dict[str, np.ndarray]:
    mat = sio.loadmat(data_dir / "rr" / "wv3_cdif.mat")
    return {k: np.asarray(mat[k], np.float64) for k in ("gt", "lrms", "pan")}


@pytest.fixture(scope="module")
def wv3_reference_scores(data_dir: Path) -> dict[str, dict[str, float]]:
    scene = _wv3_scene(data_dir)
    scores = {}
    for name in ("exp", "gsa"):
        try:
            fused = classical.METHODS[name](None, scene["lrms"], scene["pan"], sensor="WV3", ratio=4)
        except NotImplementedError:
            continue
        scores[name] = evaluate_reduced(np.asarray(fused), scene["gt"], ratio=4, max_dn=2047.0)
    return scores


@pytest.mark.parametrize("method", BASELINES)
def test_released_wv3_weights_beat_exp_and_gsa(
    data_dir: Path, weights_dir: Path, method: str, wv3_reference_scores: dict[str, dict[str, float]]
) -> None:
    scene = _wv3_scene(data_dir)
    params, cfg = import_weights(method, _released_file(weights_dir, method, "WV3"))
    assert cfg.bands == 8
    fused = fuse(params, scene["lrms"].astype(np.float32), scene["pan"].astype(np.float32), model_config=cfg, clip=True)
    assert fused.shape == (256, 256, 8)
    got = evaluate_reduced(np.asarray(fused, np.float64), scene["gt"], ratio=4, max_dn=2047.0)
    print(f"{method}: Q2n {got['Q2n']:.4f} SAM {got['SAM']:.4f} ERGAS {got['ERGAS']:.4f}")
    assert "exp" in wv3_reference_scores
    for ref, s in wv3_reference_scores.items():
        assert got["Q2n"] > s["Q2n"] and got["SAM"] < s["SAM"] and got["ERGAS"] < s["ERGAS"], (method, ref, got, s)


# ---------------------------------------------------------------------------- PyTorch equality


def _torch_networks(torch):
    """The networks in plain PyTorch, written from the published definitions.

    Each ``forward(d)`` takes a dict of NCHW tensors: lms, pan, and for PanNet ms_hp, pan_hp.
    """
    nn, F = torch.nn, torch.nn.functional

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv20 = nn.Conv2d(c, c, 3, padding=1)
            self.conv21 = nn.Conv2d(c, c, 3, padding=1)

        def forward(self, x):
            return x + self.conv21(F.relu(self.conv20(x)))

    class PNN(nn.Module):
        def __init__(self, b):
            super().__init__()
            self.conv1, self.conv2, self.conv3 = nn.Conv2d(b + 1, 64, 9), nn.Conv2d(64, 32, 5), nn.Conv2d(32, b, 5)

        def forward(self, d):
            x = F.pad(torch.cat([d["lms"], d["pan"]], 1), (8, 8, 8, 8), mode="replicate")
            return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))

    class PanNet(nn.Module):
        def __init__(self, b):
            super().__init__()
            self.deconv = nn.ConvTranspose2d(b, b, 8, stride=4, padding=2)
            self.conv1 = nn.Conv2d(b + 1, 32, 3, padding=1)
            self.res1, self.res2, self.res3, self.res4 = Res(32), Res(32), Res(32), Res(32)
            self.conv3 = nn.Conv2d(32, b, 3, padding=1)
            self.backbone = nn.Sequential(self.res1, self.res2, self.res3, self.res4)

        def forward(self, d):
            x = F.relu(self.conv1(torch.cat([self.deconv(d["ms_hp"]), d["pan_hp"]], 1)))
            return d["lms"] + self.conv3(self.backbone(x))

    class DiCNN(nn.Module):
        def __init__(self, b):
            super().__init__()
            self.conv1 = nn.Conv2d(b + 1, 64, 3, padding=1)
            self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
            self.conv3 = nn.Conv2d(64, b, 3, padding=1)

        def forward(self, d):
            x = torch.cat([d["lms"], d["pan"]], 1)
            return d["lms"] + self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))

    class MSDCNN(nn.Module):
        def __init__(self, b):
            super().__init__()
            self.conv1 = nn.Conv2d(b + 1, 60, 7, padding=3)
            self.conv2_1, self.conv2_2, self.conv2_3 = (nn.Conv2d(60, 20, k, padding=k // 2) for k in (3, 5, 7))
            self.conv3 = nn.Conv2d(60, 30, 3, padding=1)
            self.conv4_1, self.conv4_2, self.conv4_3 = (nn.Conv2d(30, 10, k, padding=k // 2) for k in (3, 5, 7))
            self.conv5 = nn.Conv2d(30, b, 5, padding=2)
            self.shallow1 = nn.Conv2d(b + 1, 64, 9, padding=4)
            self.shallow2 = nn.Conv2d(64, 32, 1)
            self.shallow3 = nn.Conv2d(32, b, 5, padding=2)

        def forward(self, d):
            x = torch.cat([d["lms"], d["pan"]], 1)
            o1 = F.relu(self.conv1(x))
            o2 = F.relu(torch.cat([self.conv2_1(o1), self.conv2_2(o1), self.conv2_3(o1)], 1) + o1)
            o3 = F.relu(self.conv3(o2))
            o4 = F.relu(torch.cat([self.conv4_1(o3), self.conv4_2(o3), self.conv4_3(o3)], 1) + o3)
            s = self.shallow3(F.relu(self.shallow2(F.relu(self.shallow1(x)))))
            return F.relu(self.conv5(o4) + s)

    class Repeat(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv2 = nn.Conv2d(32, 32, 7, padding=3)

        def forward(self, x):
            return F.relu(self.conv2(x))

    class DRPNN(nn.Module):
        def __init__(self, b):
            super().__init__()
            self.conv1 = nn.Conv2d(b + 1, 32, 7, padding=3)
            self.conv2 = nn.Conv2d(32, b + 1, 7, padding=3)
            self.conv3 = nn.Conv2d(b + 1, b, 7, padding=3)
            self.backbone = nn.Sequential(*(Repeat() for _ in range(8)))

        def forward(self, d):
            x = torch.cat([d["lms"], d["pan"]], 1)
            return self.conv3(x + self.conv2(self.backbone(F.relu(self.conv1(x)))))

    class FusionNet(nn.Module):
        def __init__(self, b):
            super().__init__()
            self.conv1 = nn.Conv2d(b, 32, 3, padding=1)
            self.res1, self.res2, self.res3, self.res4 = Res(32), Res(32), Res(32), Res(32)
            self.conv3 = nn.Conv2d(32, b, 3, padding=1)
            self.backbone = nn.Sequential(self.res1, self.res2, self.res3, self.res4)

        def forward(self, d):
            x = d["pan"].repeat(1, d["lms"].shape[1], 1, 1) - d["lms"]
            return d["lms"] + self.conv3(self.backbone(F.relu(self.conv1(x))))

    class LAGConv(nn.Module):
        def __init__(self, cin, cout, k=3):
            super().__init__()
            self.k, self.cout = k, cout
            kk = k * k
            self.attention1 = nn.Sequential(
                nn.Conv2d(cin, kk, k, padding=k // 2), nn.ReLU(), nn.Conv2d(kk, kk, 1), nn.ReLU(), nn.Conv2d(kk, kk, 1), nn.Sigmoid()
            )
            self.attention3 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(), nn.Conv2d(cout, cout, 1))
            self.weight = nn.Parameter(torch.empty(cout, cin, k, k))
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

        def forward(self, x):
            b, c, h, w = x.shape
            kk = self.k * self.k
            a = self.attention1(x).reshape(b, 1, kk, h * w)
            patches = F.unfold(x, self.k, padding=self.k // 2).reshape(b, c, kk, h * w) * a
            y = torch.einsum("bctp,oct->bop", patches, self.weight.reshape(self.cout, c, kk))
            return y.reshape(b, self.cout, h, w) + self.attention3(x)

    class LACRB(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.conv2 = LAGConv(c, c), LAGConv(c, c)

        def forward(self, x):
            return x + self.conv2(F.relu(self.conv1(x)))

    class LAGNet(nn.Module):
        def __init__(self, b):
            super().__init__()
            self.head_conv = nn.Sequential(LAGConv(b + 1, 32), nn.ReLU())
            self.RB1, self.RB2, self.RB3, self.RB4, self.RB5 = (LACRB(32) for _ in range(5))
            self.tail_conv = LAGConv(32, b)

        def forward(self, d):
            x = self.head_conv(torch.cat([d["pan"], d["lms"]], 1))
            for rb in (self.RB1, self.RB2, self.RB3, self.RB4, self.RB5):
                x = rb(x)
            return d["lms"] + self.tail_conv(x)

    return {
        "pnn": PNN, "pannet": PanNet, "dicnn": DiCNN, "msdcnn": MSDCNN,
        "drpnn": DRPNN, "fusionnet": FusionNet, "lagnet": LAGNet,
    }  # fmt: skip


def _compare_with_torch(torch, method: str, net, params, cfg, lrms: np.ndarray, pan: np.ndarray) -> float:
    """max |ours - torch| on the same lrms (N,h,w,C) / pan (N,H,W,1) float32 inputs."""
    lms = np.asarray(wald.interp23tap(jnp.asarray(lrms), 4), np.float32)

    def hp(x):  # the toolbox's get_edge: x - 5x5 box mean, reflect-101 borders
        return x - scipy.ndimage.uniform_filter(x.astype(np.float64), size=(1, 5, 5, 1), mode="mirror")

    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32).transpose(0, 3, 1, 2)))  # noqa: E731
    d = {"lms": nchw(lms), "pan": nchw(pan), "ms_hp": nchw(hp(lrms)), "pan_hp": nchw(hp(pan))}
    with torch.no_grad():
        want = net.eval()(d).numpy().transpose(0, 2, 3, 1)
    module = registry.build_model(cfg)
    got = np.asarray(module.apply({"params": params}, jnp.asarray(lrms), jnp.asarray(pan), jnp.asarray(lms)))
    assert got.shape == want.shape
    diff = float(np.abs(got - want).max())
    print(f"{method}: max |JAX - PyTorch| = {diff:.2e}")
    return diff


@pytest.mark.parametrize("method", BASELINES)
def test_released_wv3_weights_match_pytorch(data_dir: Path, weights_dir: Path, method: str) -> None:
    torch = pytest.importorskip("torch")
    path = _released_file(weights_dir, method, "WV3")
    net = _torch_networks(torch)[method](8)
    sd_torch = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(sd_torch, strict=True)
    ours = load_torch_state_dict(path, drop_aliases=False)
    assert list(ours) == list(sd_torch)
    for k, v in sd_torch.items():
        np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=k)
    params, cfg = import_weights(method, path)
    scene = _wv3_scene(data_dir)
    lrms = scene["lrms"][None, 8:40, 16:48].astype(np.float32)
    pan = scene["pan"][None, 32:160, 64:192, None].astype(np.float32)
    assert _compare_with_torch(torch, method, net, params, cfg, lrms, pan) <= 1e-5


@pytest.mark.parametrize("method", [*BASELINES, "lagnet"])
def test_random_weights_match_pytorch(method: str) -> None:
    """PyTorch-initialised weights (no release needed), 4 bands: conversion and forward equal."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = _torch_networks(torch)[method](4)
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    params = convert(method, sd, bands=4)
    cfg = infer_config(method, sd)
    unique = {p.data_ptr(): p.numel() for p in net.parameters()}  # backbone.* aliases counted once
    assert sum(math.prod(np.shape(x)) for x in jax.tree.leaves(params)) == sum(unique.values())
    rng = np.random.default_rng(1)
    lrms = rng.uniform(0.05, 0.7, size=(2, 8, 8, 4)).astype(np.float32)
    pan = rng.uniform(0.05, 0.7, size=(2, 32, 32, 1)).astype(np.float32)
    assert _compare_with_torch(torch, method, net, params, cfg, lrms, pan) <= 1e-5
