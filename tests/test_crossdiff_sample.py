"""CrossDiff stage 2 through the one trainer and the CLI: ``:head_smoke`` keeps both UNets
(``optim.frozen = 'pan2ms,ms2pan'``, optax masks) bit-identical to the trainer's initial values
while the head trains, then ``pansharp sample --method crossdiff --ckpt`` runs on its workdir.

(Loading stage-1 UNets into stage 2 is ``init_from``: its layout fit is checked in
``test_crossdiff.py``; the README's commands run the two stages in sequence.)"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.io

from pansharp_jax.cli.main import main
from pansharp_jax.train.cli_args import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "crossdiff_wv2_real.py"


def _flat(tree) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {jax.tree_util.keystr(p): np.array(v, copy=True) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.usefixtures("data_dir")
def test_head_stage_keeps_the_unets_bit_identical_then_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pansharp_jax.train import loop, parallel

    start: dict[str, dict[str, np.ndarray]] = {}
    real_init = loop.init_state

    def spy(config, example, mesh):  # noqa: ANN001, ANN202 - the trainer's initial state, copied to the host
        state, schedule = real_init(config, example, mesh)
        start["params"] = _flat(parallel.to_host(state.params))
        return state, schedule

    monkeypatch.setattr(loop, "init_state", spy)
    head = tmp_path / "head"
    config = load_config(f"{CONFIG}:head_smoke", ["--config.steps=3", "--config.eval_every=0", "--config.batch_size=2"])
    config.logging.console = False
    result = loop.train(config, head)
    monkeypatch.undo()  # restoring the checkpoint (pansharp sample) traces init_state abstractly
    before, after = start["params"], _flat(result.params)
    assert before.keys() == after.keys() and result.history[-1][0] == 3
    unets = [k for k in after if not k.startswith("['head']")]
    assert any("['encoder']" in k for k in unets) and any("['decoder']" in k for k in unets)
    for k in unets:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)  # bit-identical through stage 2
    moved = {k for k in after if not np.array_equal(before[k], after[k])}
    assert moved and all(k.startswith("['head']") for k in moved)
    assert "['head']['out']['kernel']" in moved  # the zero-initialised output conv trained away from 0

    rng = np.random.default_rng(0)
    scene = tmp_path / "wv2_tiny.mat"
    scipy.io.savemat(scene, {"I_MS_LR": rng.integers(100, 1500, (8, 8, 8)).astype(np.uint16),
                             "I_PAN": rng.integers(100, 1500, (32, 32)).astype(np.uint16)})  # fmt: skip
    f = tmp_path / "s.npz"
    args = ["sample", "--method", "crossdiff", "--ckpt", str(head), "--samples", "3", "--input", str(scene), "--sensor", "WV2"]
    capsys.readouterr()
    assert main([*args, "--out", str(f)]) == 0
    assert "3 draws" in capsys.readouterr().out
    with np.load(f) as z:
        fused, std = z["fused"], z["std"]
    assert fused.shape == std.shape == (32, 32, 8) and np.all(np.isfinite(fused))
    assert 0.0 <= fused.min() and fused.max() <= 1.0 and std.max() > 0.0  # the t = 50 noise spreads the draws
