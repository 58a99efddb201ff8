"""The resumable trace file: whole lines, torn tails repaired, no duplicates, one writer at a time."""

from __future__ import annotations

import json

import pytest

from deepicd.distill.store import StoreError, TraceStore, read_rows


def _row(key: int, text: str = "x") -> dict:
    return {"hadm_id": str(key), "completions": [text]}


def test_rows_survive_reopening_and_duplicates_are_refused(tmp_path):
    path = tmp_path / "traces.jsonl"
    with TraceStore(path) as store:
        assert store.append(_row(1)) and store.append(_row(2, "é ünïcode\nnewline"))
        assert not store.append(_row(1, "again"))
    with TraceStore(path) as store:
        assert len(store) == 2 and "1" in store and 2 in store and "3" not in store
        assert not store.append(_row(2))
        assert store.append(_row(3))
    rows = list(read_rows(path))
    assert [r["hadm_id"] for r in rows] == ["1", "2", "3"]
    assert rows[1]["completions"] == ["é ünïcode\nnewline"]
    assert path.read_text(encoding="utf-8").count("\n") == 3  # newlines inside values are escaped


@pytest.mark.parametrize("tail", [b'{"hadm_id": "9", "compl', b"\x00\x00\x00\x00", b'{"hadm_id": "9"\n', b"not json\n"])
def test_a_torn_last_line_is_truncated_away(tmp_path, tail):
    path = tmp_path / "traces.jsonl"
    with TraceStore(path) as store:
        store.append(_row(1))
        store.append(_row(2))
    whole = path.read_bytes()
    path.write_bytes(whole + tail)
    assert [r["hadm_id"] for r in read_rows(path)] == ["1", "2"]  # readers skip it too
    with TraceStore(path) as store:
        assert store.repaired_bytes == len(tail)
        assert len(store) == 2 and "9" not in store
        store.append(_row(9))
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["hadm_id"] for line in lines] == ["1", "2", "9"]


def test_a_damaged_line_in_the_middle_is_an_error_naming_it(tmp_path):
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps(_row(1)) + "\nGARBAGE\n" + json.dumps(_row(2)) + "\n")
    with pytest.raises(StoreError, match="line 2"):
        TraceStore(path).open()
    with pytest.raises(StoreError, match="line 2"):
        list(read_rows(path))


def test_a_second_writer_is_refused_until_the_first_closes(tmp_path):
    path = tmp_path / "traces.jsonl"
    first = TraceStore(path).open()
    try:
        with pytest.raises(StoreError, match="another run"):
            TraceStore(path).open()
    finally:
        first.close()
    with TraceStore(path) as again:
        assert len(again) == 0


def test_each_row_is_one_write_call(tmp_path, monkeypatch):
    import os

    calls = []
    real_write = os.write

    def spy(fd, data):
        calls.append(bytes(data))
        return real_write(fd, data)

    path = tmp_path / "traces.jsonl"
    with TraceStore(path) as store:
        monkeypatch.setattr(os, "write", spy)
        store.append({"hadm_id": "1", "completions": ["a" * 100_000]})
        store.append({"hadm_id": "2", "completions": ["b"]})
        monkeypatch.undo()
    assert len(calls) == 2 and all(call.endswith(b"\n") and call.count(b"\n") == 1 for call in calls)
