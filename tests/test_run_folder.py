"""The one rule every stage applies to its --out: same run -> nothing to do, anything else -> --overwrite."""

from __future__ import annotations

import pytest

from deepicd import manifest, run_folder
from deepicd.errors import UserError


def _finished(out, config, inputs, stage="sft-data"):
    out.mkdir(parents=True, exist_ok=True)
    manifest.write(out, manifest.record(stage, config=config, inputs=inputs))


def test_the_same_run_is_found_and_anything_else_needs_overwrite(tmp_path):
    data = tmp_path / "train.parquet"
    data.write_bytes(b"rows")
    out = tmp_path / "out"
    assert run_folder.previous_run(out, "sft-data", {"seed": 1}, {"train": data}, overwrite=False) is None  # new
    _finished(out, {"seed": 1, "out": "a"}, {"train": data})
    same = run_folder.previous_run(out, "sft-data", {"seed": 1, "out": "b"}, {"train": data}, overwrite=False,
                                   ignore=("out",))
    assert same is not None and same["stage"] == "sft-data"
    assert run_folder.previous_run(out, "sft-data", {"seed": 1, "out": "b"}, {"train": data}, overwrite=True,
                                   ignore=("out",)) is None  # --overwrite: run anew
    with pytest.raises(UserError, match=r"a sft-data run with other settings \(seed\); pass --overwrite"):
        run_folder.previous_run(out, "sft-data", {"seed": 2}, {"train": data}, overwrite=False, ignore=("out",))
    with pytest.raises(UserError, match=r"the output of deepicd sft-data, not of format-data"):
        run_folder.previous_run(out, "format-data", {"seed": 1}, {"train": data}, overwrite=False, ignore=("out",))
    data.write_bytes(b"other rows")
    with pytest.raises(UserError, match=r"other settings \(input train\)"):
        run_folder.previous_run(out, "sft-data", {"seed": 1}, {"train": data}, overwrite=False, ignore=("out",))
    data.write_bytes(b"rows")
    with pytest.raises(UserError, match=r"other settings \(input train\)"):  # an input fewer
        run_folder.previous_run(out, "sft-data", {"seed": 1}, {}, overwrite=False, ignore=("out",))
    assert run_folder.previous_run(out, "sft-data", {"seed": 1}, {}, overwrite=False, ignore=("out",),
                                   every_input=False) is not None


def test_a_folder_of_other_files_or_an_unfinished_run_is_kept(tmp_path):
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / ".hidden").write_text("")
    assert run_folder.previous_run(stray, "tiny-model", {}, {}, overwrite=False) is None  # only hidden files: empty
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="files without a deepicd manifest"):
        run_folder.previous_run(stray, "tiny-model", {}, {}, overwrite=False)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    manifest.write(unfinished, manifest.record("train-grpo", config={}), finished=False)
    with pytest.raises(UserError, match="an unfinished train-grpo run"):
        run_folder.previous_run(unfinished, "train-grpo", {}, {}, overwrite=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file; give a folder"):
        run_folder.previous_run(tmp_path / "file", "sft", {}, {}, overwrite=True)


def test_outputs_that_are_inputs_are_refused(tmp_path):
    source = tmp_path / "data" / "train.parquet"
    source.parent.mkdir()
    source.write_bytes(b"rows")
    with pytest.raises(UserError, match="--out .* is the input train"):
        run_folder.refuse_overlap([source], {"train": source})
    with pytest.raises(UserError, match="holds the input train .* which replacing it would delete"):
        run_folder.refuse_overlap([tmp_path], {"train": source})
    run_folder.refuse_overlap([tmp_path / "out"], {"train": source, "model": "org/hub-name", "none": None})


def test_clear_removes_only_the_named_entries(tmp_path):
    for name in ("checkpoints", "model"):
        (tmp_path / name).mkdir()
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    removed = run_folder.clear(tmp_path, ("checkpoints", "model", "manifest.json", "absent"))
    assert sorted(p.name for p in removed) == ["checkpoints", "manifest.json", "model"]
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_resumable_run_keeps_its_entries_and_clears_what_killed_saves_left(tmp_path, dead_pid):
    import os

    (tmp_path / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    killed = tmp_path / f".model.tmp-{dead_pid}-a"  # a final save that was killed halfway
    killed.mkdir()
    (killed / "model.safetensors").write_text("half")
    saving = tmp_path / f".model.tmp-{os.getppid()}-b"  # a live process is saving: not ours to remove
    saving.mkdir()
    run_folder.start_resumable(tmp_path, ("checkpoints", "model"), overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["checkpoints", saving.name])

    run_folder.start_resumable(tmp_path, ("checkpoints", "model"), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [saving.name]
