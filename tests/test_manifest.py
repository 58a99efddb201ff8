"""Staged writes: outputs appear whole or not at all, and temporaries of killed runs are cleared."""

from __future__ import annotations

import hashlib
import os

import pytest

from deepicd import manifest
from deepicd.errors import UserError


def test_a_folder_appears_whole_and_replaces_the_old_one(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with manifest.staged_directory(target) as staging:
        (staging / "new.txt").write_text("new")
        (staging / "model.safetensors").write_text("weights")
        (staging / "model.safetensors").chmod(0o600)  # as safetensors writes it
        assert not (target / "new.txt").exists()  # nothing shows before the block ends
    assert sorted(p.name for p in target.iterdir()) == ["model.safetensors", "new.txt"]
    assert oct((target / "model.safetensors").stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left
    assert oct(target.stat().st_mode & 0o777) == "0o755"


def test_a_failed_write_leaves_the_old_folder_and_no_temporary(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with manifest.staged_directory(target) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (target / "old.txt").read_text() == "old"


def test_a_folder_that_appeared_meanwhile_is_kept_unless_replacing(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(UserError, match="appeared during the run"):
        with manifest.staged_directory(target, replace=False) as staging:
            (staging / "new.txt").write_text("new")
            target.mkdir()
    assert list(target.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_temporaries_of_dead_runs_are_cleared_and_live_ones_kept(tmp_path, dead_pid):
    target = tmp_path / "out"
    dead = tmp_path / f".out.tmp-{dead_pid}-abc"
    dead.mkdir()
    (dead / "model.safetensors").write_text("left by a SIGKILLed run")
    dead_file = tmp_path / f".out.tmp-{dead_pid}-xyz"
    dead_file.write_text("half a file")
    live = tmp_path / f".out.tmp-{os.getppid()}-def"  # the process that started the tests is alive
    live.mkdir()
    other = tmp_path / f".outer.tmp-{dead_pid}-abc"  # another target's temporary
    other.mkdir()
    with manifest.staged_directory(target) as staging:
        (staging / "x").write_text("x")
    assert not dead.exists() and not dead_file.exists()
    assert live.exists() and other.exists() and (target / "x").exists()


def test_files_are_written_atomically_and_clear_stale_ones_too(tmp_path, dead_pid):
    path = tmp_path / "predictions.jsonl"
    stale = tmp_path / f".predictions.jsonl.tmp-{dead_pid}-q1"
    stale.write_text("torn")
    with pytest.raises(RuntimeError):
        with manifest.atomic_open(path) as handle:
            handle.write("partial")
            raise RuntimeError("killed")
    assert not path.exists() and not stale.exists() and list(tmp_path.iterdir()) == []
    manifest.write_text(path, "whole\n")
    assert path.read_text() == "whole\n" and oct(path.stat().st_mode & 0o777) == "0o644"


def test_every_record_has_every_key_and_describes_its_files(tmp_path):
    data = tmp_path / "train.parquet"
    data.write_bytes(b"rows")
    (tmp_path / "model").mkdir()
    entry = manifest.record("sft", method="sft", config={"lr": 1.0}, seed=3,
                            inputs={"train": data, "model": tmp_path / "model", "teacher": "org/name", "val": None})
    assert tuple(entry) == manifest.KEYS and entry["finished"] is None and entry["outputs"] is None
    assert entry["inputs"]["train"] == {"path": str(data.resolve()), "bytes": 4,
                                        "sha256": hashlib.sha256(b"rows").hexdigest()}
    assert entry["inputs"]["model"]["kind"] == "folder" and entry["inputs"]["teacher"]["kind"] == "name"
    assert "val" not in entry["inputs"]  # an optional input that was not given

    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "weights.bin").write_bytes(b"w" * 10)
    (out / "report.md").write_text("r")
    path = manifest.write(out, entry, outputs=manifest.describe_outputs(out, ["model"], hashed=False))
    written = manifest.read(path)
    assert tuple(written) == manifest.KEYS and written["finished"] >= written["created"]
    assert written["outputs"] == {"model/weights.bin": {"bytes": 10}}
    everything = manifest.describe_outputs(out)  # the whole folder, less the manifest itself
    assert set(everything) == {"model/weights.bin", "report.md"} and everything["report.md"]["sha256"]

    with pytest.raises(ValueError, match="missing \\['result'\\]"):
        manifest.write(out, {key: None for key in manifest.KEYS if key != "result"})
    assert manifest.read(tmp_path / "absent.json") == {}
