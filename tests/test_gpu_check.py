"""benchmarks/gpu_check.py runs end to end on the CPU (`--tiny`) and degrades to explicit skips.

GPU time is scarce, so the script that spends it must not fail there for a
reason a CPU could have shown: every section is exercised here at tiny sizes,
and the packages the GPU image may lack are hidden to check that their sections
turn into skips that name the missing module rather than errors.
"""

from __future__ import annotations

import json
import numbers
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
SECTIONS = {"matmul_peak", "correctness", "sft", "generation", "grpo"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run_check(out: Path, *extra: str) -> dict:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))


def numbers_in(value) -> list:
    """Every number (not bool) anywhere inside a JSON value."""
    if isinstance(value, bool):
        return []
    if isinstance(value, numbers.Number):
        return [value]
    if isinstance(value, dict):
        return [n for item in value.values() for n in numbers_in(item)]
    if isinstance(value, list):
        return [n for item in value for n in numbers_in(item)]
    return []


def importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("gpu-check")
    return run_check(out), out


def test_every_section_has_numbers_or_a_skip_reason(tiny_report):
    report, _ = tiny_report
    assert set(report["sections"]) == SECTIONS
    for name, entry in report["sections"].items():
        assert entry["status"] in {"ok", "skipped"}, (name, entry.get("error"), entry.get("traceback"))
        if entry["status"] == "skipped":
            assert "not importable" in entry["reason"]
        else:
            assert numbers_in(entry.get("results")), name
        assert isinstance(entry["seconds"], float)
    assert report["wall_s"] > 0 and report["mode"] == "tiny"


def test_sections_measure_what_they_claim(tiny_report):
    sections = tiny_report[0]["sections"]
    assert sections["matmul_peak"]["measured_peak_tflops"] > 0
    correctness = sections["correctness"]["results"]
    assert correctness["passed"] is True
    assert correctness["greedy_rows_identical"] == correctness["greedy_rows"]
    generation = sections["generation"]
    assert [row.get("tokens_per_s", 0) > 0 for row in generation["results"]] == [True, True]
    # Greedy decoding in fp32 on one CPU: batching must not change a single token.
    assert generation["greedy_agreement"]["match_rate"] == 1.0
    if not importable("trl"):
        pytest.skip("trl is not installed: the SFT and GRPO sections are skips")
    rows = sections["sft"]["results"]
    assert {(row["variant"], "error" in row) for row in rows} == {("deepicd", False), ("trl-defaults", False)}
    assert all(row["tokens_per_s"] > 0 and row["timed_optimizer_steps"] >= 1 for row in rows)
    grpo = sections["grpo"]["results"]
    assert grpo["median_step_s"] > 0 and grpo["generation_s"] > 0
    assert grpo["median_step_s"] >= grpo["generation_s"] + grpo["reward_s"]


def test_markdown_table_names_every_section(tiny_report):
    _, out = tiny_report
    table = (out / "gpu_check.md").read_text(encoding="utf-8")
    assert "| section | case | figure | notes |" in table
    for name in SECTIONS:
        assert f"| {name} |" in table


def test_missing_packages_turn_into_skips(tmp_path):
    report = run_check(tmp_path, "--without", "trl", "omegaconf", "--sections", "correctness", "sft", "grpo")
    sections = report["sections"]
    assert set(sections) == {"correctness", "sft", "grpo"}
    for name in ("sft", "grpo"):
        assert sections[name]["status"] == "skipped"
        assert sections[name]["reason"].startswith("trl not importable")
    # deepicd.tiny builds its model without omegaconf (the GPU image lacks it), so the check uses it.
    assert sections["correctness"]["status"] == "ok"
    assert sections["correctness"]["results"]["passed"] is True
    assert sections["correctness"]["model"] == "deepicd.tiny.init_model (default preset shape)"


def test_its_flat_preset_reader_composes_sft_presets_as_hydra_does(monkeypatch):
    """The GPU image lacks Hydra, so the check reads the SFT presets with PyYAML; it must see what `sft` sees."""
    import importlib.util

    from deepicd.config import CONFIG_ROOT, available_presets, compose_dict

    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # as when the script runs: benchmarks/ on sys.path
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    for name in available_presets("sft"):
        flat = module.flat_preset(CONFIG_ROOT / "sft" / f"{name}.yaml")
        assert flat == compose_dict("sft", name), name
