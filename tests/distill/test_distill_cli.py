"""`deepicd distill` from the command line: a real OpenAI-compatible teacher on loopback, SIGKILL, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from deepicd.cli import app

FAKES = Path(__file__).with_name("distill_fakes.py")


@pytest.fixture
def teacher_url():
    server = subprocess.Popen([sys.executable, str(FAKES), "0.15"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        server.kill()
        server.wait()


def _command(data: Path, out: Path, url: str) -> list[str]:
    return [
        sys.executable, "-m", "deepicd", "distill", "--data", str(data), "--split", "train", "--out", str(out),
        "--backend", "openai", "--teacher", "fake-teacher", "--config", "tiny-cpu",
        f"generator.url={url}", "generator.api=chat", "generator.concurrency=2", "generator.retries=0",
        "filters.min_words=10", "sync_every=2",
    ]


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_gives_every_admission_exactly_once(make_data, tmp_path, teacher_url):
    total = 40
    data = make_data(total)
    out = tmp_path / "out"
    traces = out / "traces.jsonl"

    run = subprocess.Popen(_command(data, out, teacher_url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while _lines(traces) < 6 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    written = _lines(traces)
    assert run.returncode == -signal.SIGKILL
    assert 6 <= written < total, f"kill came too late or too early: {written} rows"
    assert not (out / "sft").exists()  # outputs are built only after generation finished

    # A crash during a write can leave half a line; the rerun must cut it off, not choke on it.
    with open(traces, "ab") as handle:
        handle.write(b'{"hadm_id": "200000')

    rerun = subprocess.run(_command(data, out, teacher_url), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "torn last line" in rerun.stderr

    rows = [json.loads(line) for line in traces.read_text().splitlines()]
    keys = [row["hadm_id"] for row in rows]
    expected = set(pd.read_parquet(data / "train.parquet")["hadm_id"].astype(str))
    assert len(keys) == total and set(keys) == expected  # every admission, exactly once
    stats = json.loads((out / "stats.json").read_text())
    assert stats["table2"]["samples"] == total and stats["missing"] == 0
    train, val = (pd.read_parquet(out / "sft" / f"{s}.parquet") for s in ("train", "val"))
    assert len(train) + len(val) == total
    assert f"{total}/{total} admissions have a trace" in rerun.stdout


@pytest.mark.slow
def test_backend_errors_are_counted_and_exit_nonzero(make_data, tmp_path, teacher_url):
    data = make_data(6, markers={2: "zzfail"})
    result = subprocess.run(_command(data, tmp_path / "out", teacher_url), capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "5 new traces (1 backend errors, the first: HTTP 400 from" in result.stdout
    assert "this teacher refuses the note; rerun to retry them)" in result.stdout
    assert _lines(tmp_path / "out" / "traces.jsonl") == 5


def test_a_bad_config_key_is_named(make_data, tmp_path):
    data = make_data(2)
    result = CliRunner().invoke(
        app, ["distill", "--data", str(data), "--out", str(tmp_path / "o"), "--teacher", "t", "sampling.temprature=1"]
    )
    assert result.exit_code == 2
    assert "temprature" in result.output


def test_a_missing_data_folder_is_reported(tmp_path):
    result = CliRunner().invoke(
        app, ["distill", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--teacher", "t"]
    )
    assert result.exit_code == 2
    assert "data folder not found" in result.output and "nowhere" in result.output


def test_an_unknown_preset_lists_the_shipped_ones(make_data, tmp_path):
    result = CliRunner().invoke(
        app, ["distill", "--data", str(make_data(2)), "--out", str(tmp_path / "o"), "--teacher", "t", "--config", "huge"]
    )
    assert result.exit_code == 2
    assert "paper" in result.output and "tiny-cpu" in result.output


def test_a_teacher_off_the_local_network_is_refused(make_data, tmp_path):
    result = CliRunner().invoke(
        app,
        ["distill", "--data", str(make_data(2)), "--out", str(tmp_path / "o"), "--backend", "openai", "--teacher", "t",
         "generator.url=http://8.8.8.8/v1", "generator.api=chat"],
    )
    assert result.exit_code == 2
    assert "refusing to send MIMIC-derived text" in result.output
    assert not (tmp_path / "o" / "traces.jsonl").exists() or _lines(tmp_path / "o" / "traces.jsonl") == 0


@pytest.mark.slow
def test_a_distillation_that_keeps_nothing_exits_nonzero_and_says_why(make_data, tmp_path, teacher_url):
    data = make_data(4)
    command = _command(data, tmp_path / "out", teacher_url) + ["filters.min_words=100000", "filters.max_words=0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "kept none of the 4 traces (rejected: " in result.stderr and "repair_answer" in result.stderr
