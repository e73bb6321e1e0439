"""The sensor table and user sensors: built-in gains, sensor files (YAML/JSON), the registry."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pansharp_jax.data import sensors
from pansharp_jax.data.sensors import (
    SENSORS,
    Sensor,
    get_sensor,
    load_sensor_file,
    register_sensor,
    save_sensor_file,
)
from pansharp_jax.data.wald import mtf_filter, mtf_kernels
from pansharp_jax.errors import InputError

# The MATLAB toolbox's genMTF.m / MTF_PAN.m values (and its generic 0.3 / 0.15 otherwise).
TOOLBOX = {
    "QB": ((0.34, 0.32, 0.30, 0.22), 0.15),
    "IKONOS": ((0.26, 0.28, 0.29, 0.28), 0.17),
    "GeoEye1": ((0.23,) * 4, 0.16),
    "WV4": ((0.23,) * 4, 0.16),
    "WV2": ((0.35,) * 7 + (0.27,), 0.11),
    "WV3": ((0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315), 0.14),
    "GF2": ((0.3,) * 4, 0.15),
    "Pleiades": ((0.3,) * 4, 0.15),
    "Landsat8": ((0.3,) * 6, 0.15),
    "Landsat9": ((0.3,) * 6, 0.15),
}

SPOT = """\
name: SPOT6x
ms_gnyq: [0.31, 0.32, 0.33, 0.34]
pan_gnyq: 0.2
bits: 12
band_names: [blue, green, red, nir]
rgb: [2, 1, 0]
ratio: 4
"""


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    saved = dict(SENSORS)
    yield
    SENSORS.clear()
    SENSORS.update(saved)


def _one_line(e: pytest.ExceptionInfo[InputError]) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_builtin_table_has_every_peer_sensor_with_toolbox_gains() -> None:
    for name, (ms, pan) in TOOLBOX.items():
        s = get_sensor(name)
        assert s.name == name and s.ms_gnyq == ms and s.pan_gnyq == pan, name
        assert len(s.band_names) == len(ms) and all(0 <= i < len(ms) for i in s.rgb)
        sensors.validate_sensor(s)
    assert get_sensor("GF2").bits == 10 and get_sensor("Landsat8").ratio == 2
    assert get_sensor("gaofen2") is get_sensor("GF2") and get_sensor("worldview3") is get_sensor("WV3")


def test_yaml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "spot.yaml"
    path.write_text(SPOT, encoding="utf-8")
    s = load_sensor_file(path)
    assert s == Sensor("SPOT6x", (0.31, 0.32, 0.33, 0.34), 0.2, 12, ("blue", "green", "red", "nir"), (2, 1, 0), 4)
    assert "SPOT6x" not in SENSORS  # loading alone does not register
    for ext in (".yml", ".json"):
        again = load_sensor_file(save_sensor_file(s, tmp_path / f"copy{ext}"))
        assert again == s
    assert json.loads((tmp_path / "copy.json").read_text())["ms_gnyq"] == [0.31, 0.32, 0.33, 0.34]
    wv3 = dataclasses.replace(get_sensor("WV3"), name="MyWV3")
    assert load_sensor_file(save_sensor_file(wv3, tmp_path / "wv3.yaml")) == wv3


def test_optional_fields_get_defaults(tmp_path: Path) -> None:
    path = tmp_path / "min.json"
    path.write_text(json.dumps({"name": "Mini", "ms_gnyq": [0.3, 0.3], "pan_gnyq": 0.15, "bits": 8}))
    s = load_sensor_file(path)
    assert s.band_names == ("band1", "band2") and s.rgb == (0, 0, 0) and s.ratio == 4


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"ms_gnyq": [0.31, 1.2, 0.33, 0.34]}, "ms_gnyq[1]"),
        ({"ms_gnyq": [0.0, 0.3, 0.3, 0.3]}, "ms_gnyq[0]"),
        ({"pan_gnyq": 1.0}, "pan_gnyq"),
        ({"bits": 7}, "bits"),
        ({"bits": 17}, "bits"),
        ({"bits": 11.5}, "bits"),
        ({"band_names": ["b", "g", "r"]}, "band_names"),
        ({"rgb": [4, 1, 0]}, "rgb"),
        ({"rgb": [2, 1]}, "rgb"),
        ({"ratio": 1}, "ratio"),
        ({"colour": "red"}, "unknown field"),
        ({"name": ""}, "name"),
    ],
)
def test_invalid_fields_are_one_line_input_errors(tmp_path: Path, change: dict, words: str) -> None:
    import yaml

    fields = yaml.safe_load(SPOT) | change
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(fields), encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_sensor_file(path)
    msg = _one_line(e)
    assert "bad.yaml" in msg and words in msg, msg


def test_broken_files(tmp_path: Path) -> None:
    cases = {"missing.yaml": None, "syntax.yaml": "name: [unclosed\n", "list.yaml": "- 1\n- 2\n",
             "syntax.json": "{name: 1}", "short.yaml": "name: X\nbits: 11\n"}  # fmt: skip
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(InputError) as e:
            load_sensor_file(tmp_path / name)
        assert name in _one_line(e)
    with pytest.raises(InputError, match="missing field"):
        load_sensor_file(tmp_path / "short.yaml")


def test_get_sensor_reads_and_registers_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "spot.yaml").write_text(SPOT, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    s = get_sensor("spot.yaml")
    assert s.name == "SPOT6x" and s.ms_gnyq == (0.31, 0.32, 0.33, 0.34)
    assert get_sensor("SPOT6x") == s and get_sensor("spot6x") == s  # registered, case-insensitive
    assert get_sensor(str(tmp_path / "spot.yaml")) == s  # again: same facts, no error
    # an edited file replaces the user's own sensor
    (tmp_path / "spot.yaml").write_text(SPOT.replace("pan_gnyq: 0.2", "pan_gnyq: 0.25"), encoding="utf-8")
    assert get_sensor("spot.yaml").pan_gnyq == 0.25 and SENSORS["SPOT6x"].pan_gnyq == 0.25
    # its gains drive the MTF filter exactly like the same gains given by hand
    x = np.random.default_rng(0).random((24, 24, 4))
    with jax.enable_x64(True):
        a = np.asarray(mtf_filter(jnp.asarray(x), "spot.yaml", 4))
        b = np.asarray(mtf_filter(jnp.asarray(x), [0.31, 0.32, 0.33, 0.34], 4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(mtf_kernels([0.31], 4), mtf_kernels([0.3], 4))
    with pytest.raises(InputError, match="sensor file not found"):
        get_sensor("nowhere.yml")


def test_file_may_not_redefine_a_builtin(tmp_path: Path) -> None:
    path = tmp_path / "wv3.yaml"
    path.write_text(SPOT.replace("SPOT6x", "WV3"), encoding="utf-8")
    with pytest.raises(InputError) as e:
        get_sensor(str(path))
    assert "built-in sensor WV3" in _one_line(e)
    assert get_sensor("WV3").ms_gnyq == TOOLBOX["WV3"][0]


def test_register_sensor(tmp_path: Path) -> None:
    mine = Sensor("Mine", (0.3, 0.3, 0.3), 0.2, 12, ("r", "g", "b"), (0, 1, 2))
    assert register_sensor(mine) is mine and get_sensor("Mine") is mine
    assert register_sensor(mine) is mine  # the same facts again: fine
    other = dataclasses.replace(get_sensor("QB"), pan_gnyq=0.2)
    with pytest.raises(InputError) as e:
        register_sensor(other)
    assert "already built-in" in _one_line(e) and "overwrite=True" in str(e.value)
    assert get_sensor("QB").pan_gnyq == 0.15
    assert register_sensor(other, overwrite=True).pan_gnyq == 0.2 and get_sensor("QB").pan_gnyq == 0.2
    with pytest.raises(InputError, match="already registered"):
        register_sensor(dataclasses.replace(mine, bits=11))
    with pytest.raises(InputError, match="generic"):
        register_sensor(dataclasses.replace(get_sensor(None), pan_gnyq=0.2), overwrite=True)
    with pytest.raises(InputError, match="rgb"):
        register_sensor(Sensor("Bad", (0.3, 0.3), 0.2, 12, ("a", "b"), (0, 1, 2)))
    with pytest.raises(InputError, match="unknown sensor 'Hubble'"):
        get_sensor("Hubble")
