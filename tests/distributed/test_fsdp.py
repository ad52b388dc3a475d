"""FSDP2 (`fully_shard`) on 2 gloo CPU processes: a user's loop walked by `Walk(...,
scratch=)` on the sharded model emits every value of the same Walk on the unsharded model
(float64, to 1e-10 relative); what the sharded walk cannot measure is refused in one line;
and the two reasons the single-device evaluator cannot run on a sharded model. The design:
docs/performance.md, "Past one device: FSDP2"; its use: docs/own_training.md."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # subprocesses: .ci/run's second layer

SCRIPT = Path(__file__).with_name("fsdp_walk.py")


def _torchrun():
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else shutil.which("torchrun") and ["torchrun"]


@pytest.fixture(scope="module")
def result():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*_torchrun(), "--standalone", "--nproc_per_node", "2", str(SCRIPT)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.skipif(not _torchrun(), reason="torchrun not installed")
@pytest.mark.parametrize("run", ["adamw", "sgd"])
def test_sharded_walk_emits_the_unsharded_values(result, run):
    out = result["runs"][run]
    # every emitted value (scalars and per-layer vectors) of 4 steps (and the line's
    # header), on both ranks (measured: at most 2.5e-13)
    assert out["steps"] == ([-1] if run == "adamw" else []) + [0, 1, 2, 3]
    assert out["max_rel"] < 1e-10, out["where"]
    families = {"trajectory": "cos_grad_layers", "economy": "econ_floor_loss"}
    if run == "adamw":
        families |= {f"line {s}": f"line_{s}_eps" for s in ("probe", "batch", "heldout")}
    else:
        families["peak reach"] = "econ_reach"
    assert set(families.values()) <= set(out["keys"]), families
    # all of a step's dot products in one all-reduce of a (layers, pairs) table, and one
    # all-reduce of (points, examples) losses per sweep: the economy's forward at
    # theta_{t+1} on the batch of 16, K = 7 points on the probe set of 13 and held-out 9
    # (6 from step 1: a = 0 is the last a = 1), K - 1 on the batch (a = 1 is shared)
    dots = [[s for s in step if s[0] == out["layers"]] for step in out["sums"]]
    losses = [sorted(s for s in step if s[0] != out["layers"]) for step in out["sums"]]
    if run == "adamw":
        assert [len(d) for d in dots] == [1] * 4
        assert losses == [[[1, 16], [6, 16], [7, 9], [7, 13]]] + [
            [[1, 16], [6, 9], [6, 13], [6, 16]]] * 3
    else:  # the trajectory every 2nd step: between, the path length's u.u and the
        # economy's g.u are reduced apart; the economy's one forward, at a_2 = 3
        assert [len(d) for d in dots] == [1, 2, 1, 2]
        assert losses == [[[1, 16]]] * 4
    # each rank's flat buffers hold its shards: 113 of the 214 parameters on rank 0, the
    # layers' dim-0 shards rounded up; the last layer (Scale, 1 entry) is empty on rank 1
    assert out["local_entries"] == [113, 214]
    assert out["layer_entries"] == [[35, 55, 22, 1], [35, 55, 11, 0]]
    # the sharded model took the unsharded steps: the walk never wrote it
    assert out["model_diff"] < 1e-14


@pytest.mark.skipif(not _torchrun(), reason="torchrun not installed")
def test_what_the_sharded_walk_cannot_measure_is_refused_in_one_line(result):
    refused = result["refused"]
    assert all("\n" not in text for text in refused.values())
    where = "Walk on a sharded (FSDP2) model: expected "
    assert refused["curvature"] == where + (
        "probes among trajectory, economy, line (dot products and no-grad forwards), "
        "got curvature, sharpness")
    assert refused["jvp"].startswith(where + "walk.economy_jvp = false")
    assert refused["jvp"].endswith("got true")
    assert refused["bn_policy"].startswith(where + "bn_policy 'batch'")
    assert refused["bn_policy"].endswith("got 'eval'")
    assert refused["no_scratch"].startswith(where + "scratch= a second instance")
    assert refused["no_scratch"].endswith("got none")
    assert refused["unlike_scratch"].endswith("got ('0.weight', (5, 6)) against "
                                              "('0.weight', (6, 6))")
    assert refused["plain_scratch"] == ("Walk: expected scratch= only with a model sharded "
                                        "by FSDP2 (DTensor parameters), got a model of plain "
                                        "tensors")
    assert refused["hessian"].startswith("sharded evaluator: expected no-grad sweeps only")


@pytest.mark.skipif(not _torchrun(), reason="torchrun not installed")
def test_the_single_device_evaluator_cannot_run_on_a_sharded_model(result):
    # why the forwards run on a second sharded instance instead of functional_call on
    # copies: functional_call with plain tensors fails, and copies are refused
    assert result["functional_call"] == (
        "AttributeError: 'Tensor' object has no attribute '_local_tensor'")
    assert result["deepcopy"].startswith("AssertionError: FSDP does not support deepcopy")


def test_leave_process_group_flushes_and_exits_with_the_code(tmp_path):
    """The scripts' way out after FSDP2 (torch 2.13/gloo can abort in the interpreter's
    teardown): what was printed is flushed, the exit code is the one given, and nothing
    after the call runs."""
    code = ("import torch.distributed as dist\n"
            "from sgdwalk.train.distributed import leave_process_group\n"
            "dist.init_process_group('gloo', init_method='tcp://127.0.0.1:0', rank=0,"
            " world_size=1)\n"
            "print('done', end='')\n"
            "leave_process_group(3)\n"
            "print('after')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert (proc.returncode, proc.stdout) == (3, "done"), proc.stderr[-2000:]
