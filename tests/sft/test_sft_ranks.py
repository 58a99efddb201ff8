"""`deepicd sft` under a two-process launch on the CPU (gloo): what every rank decides about OUT.

A multi-GPU FSDP run cannot start here, but its process handling can: the
ranks must agree on the number of processes (the batch arithmetic), only the
main rank may clear or write OUT, and a rerun must end the same way on every
rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _launch(distilled, tiny_model, out, *extra):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "deepicd", "sft", "--config", "tiny-cpu", "--data", str(distilled), "--model", str(tiny_model),
               "--out", str(out), "max_steps=2", "save_steps=2", "cpu_threads=1", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_two_ranks_train_once_and_agree_on_reruns(distilled, tiny_model, tmp_path, dead_pid):
    out = tmp_path / "run"
    stale = out / f".model.tmp-{dead_pid}-x"  # left by a run killed while saving; the next run clears it
    stale.mkdir(parents=True)
    # 8 samples a step cannot be split into 8 per rank on 2 ranks: both ranks see 2 processes.
    uneven = _launch(distilled, tiny_model, out, "per_device_batch_size=8")
    assert uneven.returncode != 0 and "per_device_batch_size x processes = 8 x 2" in uneven.stderr + uneven.stdout

    first = _launch(distilled, tiny_model, out, "per_device_batch_size=4")
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("trained 2 steps") == 1  # the main rank reports, the other returns quietly
    recorded = json.loads((out / "manifest.json").read_text())["result"]
    assert (recorded["processes"], recorded["gradient_accumulation_steps"]) == (2, 1)
    # Both ranks saved into the main rank's staging folder, which then became model/.
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "manifest.json", "model"]
    assert (out / "model" / "model.safetensors").is_file()

    again = _launch(distilled, tiny_model, out, "per_device_batch_size=4")
    assert again.returncode == 0 and again.stdout.count("already holds this run") == 1
    anew = _launch(distilled, tiny_model, out, "per_device_batch_size=4", "--overwrite")  # main clears, all wait
    assert anew.returncode == 0 and anew.stdout.count("trained 2 steps") == 1, anew.stderr[-2000:]
    other = _launch(distilled, tiny_model, out, "per_device_batch_size=4", "learning_rate=1e-3")
    assert other.returncode != 0 and "other settings (learning_rate)" in other.stderr + other.stdout
