"""`make demo`: every stage of the pipeline, for real, on one CPU, in minutes.

synthetic MIMIC-IV -> preprocess -> tiny model -> an instruct-like base (SFT on
the answer format: the note's body system named, the code from a wrong chapter) -> R1-zero GRPO (TRL, rule rewards + LLM
judge served by `transformers serve` on loopback) -> distillation with that
GRPO model as teacher -> SFT -> SFT+GRPO -> outcome-only SFT (the answer alone,
no teacher: the paper's Table 4) -> evaluation of every model -> the report:
Table 3, Table 4 and Figure 4 (per-chapter F1 against the distilled SFT
samples) -> the checks of `demo_check`. Each step runs the `deepicd` command a
user would type, in a subprocess, so the demo also proves the stages meet only
through files.

A finished step leaves a `.done` marker in its folder: rerunning the demo after
an interruption continues where it stopped (`--fresh` starts over).

The tiny model is far too small to follow the oracle prompt, so the demo's
distillation keeps its (noisy) reasoning and writes the gold code as the answer
(`filters.repair_answer=true`, reported in the distillation report). Everything
else runs with the settings a real run uses, scaled down."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from deepicd import config as configuration
from deepicd.schema import require
from deepicd.serving import transformers_server


@dataclass
class DemoConfig:
    """Sizes of the demo; `configs/demo/default.yaml` holds the shipped values."""

    out: str = "runs/demo"  # the demo's folder: every stage writes below it
    seed: int = 0  # seeds the synthetic data, the splits and the format data
    admissions: int = 900  # synthetic admissions (some are ICD-9 or dropped, as in MIMIC-IV)
    codes: int = 48  # distinct target codes, long-tailed
    # Codes come in clusters (several per category, several categories per chapter), so that chapter,
    # category and full-code F1 are different tasks; 1 and 1 draw every code on its own.
    codes_per_category: int = 3  # codes sharing one category
    categories_per_chapter: int = 3  # categories sharing one chapter
    # key=value overrides passed to each stage's command:
    preprocess: list[str] = field(default_factory=list)  # `deepicd preprocess`
    instruct: list[str] = field(default_factory=list)  # the format-only SFT that makes the base (`deepicd sft`)
    grpo: list[str] = field(default_factory=list)  # R1-zero GRPO (`deepicd train-grpo`)
    judge: list[str] = field(default_factory=list)  # the reward's `judge.*` keys of both GRPO runs
    distill: list[str] = field(default_factory=list)  # `deepicd distill`, the GRPO model as teacher
    sft: list[str] = field(default_factory=list)  # SFT on the distilled traces (`deepicd sft`)
    sft_grpo: list[str] = field(default_factory=list)  # GRPO from the SFT model (`deepicd train-grpo --init`)
    # Extra overrides of the outcome-only SFT, on top of `sft`: both rows of Table 4 train alike by default.
    sft_outcome: list[str] = field(default_factory=list)
    evaluate: list[str] = field(default_factory=list)  # `deepicd evaluate` of every model
    # What "it learns" means for the demo (`demo_check`); `check_learning: false` still computes and
    # prints the checks but does not fail on them (the test suite's smoke run is too short to learn).
    check_learning: bool = True
    min_format_rate: float = 0.9  # the final model must answer in the format at least this often
    paired_samples: int = 1000  # bootstrap resamples of the SFT+GRPO against SFT comparison

    def __post_init__(self) -> None:
        where = "demo config"
        for key in ("admissions", "codes", "codes_per_category", "categories_per_chapter"):
            require(getattr(self, key) >= 1, where, key, "must be at least 1", getattr(self, key))
        require(0.0 <= self.min_format_rate <= 1.0, where, "min_format_rate", "must be in [0, 1]", self.min_format_rate)
        require(self.paired_samples >= 0, where, "paired_samples", "must not be negative", self.paired_samples)


def load_demo_config(name_or_path: str = "default", overrides: list[str] | tuple[str, ...] = ()) -> DemoConfig:
    """The demo's preset by name or YAML path, with key=value overrides, checked when built."""
    return configuration.load(DemoConfig, "demo", name_or_path, overrides)


class DemoFailed(RuntimeError):
    pass


class Demo:
    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.root = Path(config.out)
        self.data = self.root / "data"
        self.started = time.monotonic()

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def step(self, name: str, done_dir: Path, args: list[str]) -> None:
        """Run `deepicd ARGS` unless `done_dir` holds the marker of an earlier success."""
        marker = done_dir / ".done"
        elapsed = time.monotonic() - self.started
        if marker.exists():
            print(f"[{elapsed:6.0f}s] {name}: done earlier, skipped ({done_dir})", flush=True)
            return
        command = [sys.executable, "-m", "deepicd", *args]
        print(f"\n[{elapsed:6.0f}s] {name}: deepicd {shlex.join(args)}", flush=True)
        begin = time.monotonic()
        completed = subprocess.run(command)
        if completed.returncode != 0:
            raise DemoFailed(f"step '{name}' failed with exit code {completed.returncode}: deepicd {shlex.join(args)}")
        done_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{time.monotonic() - begin:.1f}\n")
        print(f"[{time.monotonic() - self.started:6.0f}s] {name}: finished in {time.monotonic() - begin:.0f}s", flush=True)

    def run(self) -> list:
        c = self.config
        raw = self.path("mimic")
        self.step("synthetic MIMIC-IV", raw, ["synth-mimic", "--out", str(raw), "--admissions", str(c.admissions),
                                               "--seed", str(c.seed), "--codes", str(c.codes),
                                               "--codes-per-category", str(c.codes_per_category),
                                               "--categories-per-chapter", str(c.categories_per_chapter),
                                               "--overwrite"])
        self.step("preprocess", self.data, ["preprocess", "--mimic-dir", str(raw), "--out", str(self.data), "--overwrite",
                                            f"seed={c.seed}", *c.preprocess])
        tiny = self.path("models", "tiny")
        self.step("tiny model", tiny, ["tiny-model", "--out", str(tiny), "--corpus", str(self.data / "train.parquet"),
                                       f"seed={c.seed}", "--overwrite"])
        # The paper starts from an instruct model: teach the tiny one the format, the notes' words and their
        # body systems, with every answer from a wrong chapter, so it answers in format but misses every
        # chapter, and GRPO has something to learn from the reward (see deepicd.train.format_data).
        format_data = self.path("format-data")
        self.step("format-only SFT data (answers from wrong chapters)", format_data, [
            "format-data", "--data", str(self.data), "--split", "train", "--out", str(format_data),
            "--seed", str(c.seed), "--overwrite"])
        instruct = self.path("models", "instruct")
        self.step("instruct-like base (SFT on the format)", instruct, [
            "sft", "--config", "tiny-cpu", "--data", str(format_data), "--model", str(tiny), "--out", str(instruct),
            *c.instruct])
        base = instruct / "model"
        with transformers_server(self.path("judge-server")) as judge_url:
            print(f"judge: transformers serve at {judge_url}, serving {base}", flush=True)
            judge_overrides = [f"judge.url={judge_url}", f"judge.model={base.resolve()}", *c.judge]
            judge = ["reward.preset=paper-judge", "reward.overrides=" + json.dumps(judge_overrides)]
            grpo = self.path("grpo")
            self.step("R1-zero GRPO (TRL, judge on)", grpo, ["train-grpo", "--config", "tiny-cpu", "--model", str(base),
                                                             "--data", str(self.data), "--out", str(grpo), *judge, *c.grpo])
            distill = self.path("distill")
            self.step("distill (teacher: the GRPO model)", distill, [
                "distill", "--config", "tiny-cpu", "--data", str(self.data), "--split", "train", "--out", str(distill),
                "--teacher", str(grpo / "model"), "--backend", "transformers", *c.distill])
            sft = self.path("sft")
            self.step("SFT", sft, ["sft", "--config", "tiny-cpu", "--data", str(distill), "--model", str(base),
                                   "--out", str(sft), *c.sft])
            sft_grpo = self.path("sft-grpo")
            self.step("SFT+GRPO (TRL, judge on)", sft_grpo, ["train-grpo", "--config", "tiny-cpu", "--init",
                                                             str(sft / "model"), "--data", str(self.data), "--out",
                                                             str(sft_grpo), *judge, *c.sft_grpo])
        # Table 4: the same student fine-tuned on the answer alone (code-only prompt, no reasoning, no teacher),
        # on the notes the distilled set kept, so the two students differ in their targets only.
        outcome_data = self.path("sft-outcome-data")
        self.step("outcome-only SFT data", outcome_data, ["sft-data", "--data", str(self.data), "--split", "train",
                                                          "--out", str(outcome_data), "--like", str(distill),
                                                          "--overwrite"])
        sft_outcome = self.path("sft-outcome")
        self.step("outcome-only SFT", sft_outcome, ["sft", "--config", "tiny-cpu", "--data", str(outcome_data), "--model",
                                                    str(base), "--out", str(sft_outcome), *c.sft, *c.sft_outcome])
        models = {"baseline": base, "grpo": grpo / "model", "sft": sft / "model", "sft-grpo": sft_grpo / "model"}
        evals = []
        for stage, model in models.items():
            target = self.path("eval", stage)
            self.step(f"evaluate {stage}", target, ["evaluate", "--model", str(model), "--data", str(self.data),
                                                    "--out", str(target), "--stage", stage, "--overwrite", *c.evaluate])
            evals.append(target)
        target = self.path("eval", "sft-outcome")
        self.step("evaluate sft-outcome (code-only)", target, [
            "evaluate", "--model", str(sft_outcome / "model"), "--data", str(self.data), "--out", str(target),
            "--stage", "sft", "--code-only", "--overwrite", *c.evaluate])
        evals.append(target)
        report = self.path("report")
        (report / ".done").unlink(missing_ok=True)  # the tables always reflect the evaluations on disk
        self.step("report (Tables 3 and 4, Figure 4)", report, ["report", *map(str, evals), "--out", str(report),
                                                                "--sft-stats", str(distill / "stats.json"),
                                                                "--overwrite"])
        return self.check()

    def check(self) -> list:
        """The demo's promise (`demo_check`): every claim printed PASS or FAIL with its numbers.

        With `check_learning` a failed claim fails the demo (exit 1) and names itself; without it the
        checks are still computed and written, so a short smoke run exercises them too.
        """
        from deepicd import demo_check

        checks = demo_check.run_checks(self.root, self.config.min_format_rate, self.config.paired_samples,
                                       self.config.seed)
        demo_check.write(checks, self.path("report", "checks.json"))
        print("\nThe demo's checks:")
        for check in checks:
            print(f"  {'PASS' if check.passed else 'FAIL'}  {check.name}: {check.detail}")
        print(f"report: {self.path('report')}  ({time.monotonic() - self.started:.0f} s in all)")
        failed = [check.name for check in checks if not check.passed]
        if failed and self.config.check_learning:
            raise DemoFailed("the models did not learn what the demo promises: " + ", ".join(failed))
        return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepicd.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="default", help="demo preset (configs/demo/NAME.yaml) or YAML file")
    parser.add_argument("--fresh", action="store_true", help="delete the demo folder first instead of continuing")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. admissions=400 out=runs/demo-small")
    args = parser.parse_args(argv)
    config = load_demo_config(args.config, args.overrides)
    if args.fresh:
        shutil.rmtree(config.out, ignore_errors=True)
    # A terminated demo unwinds like an interrupted one: the running stage is killed, the judge server
    # stopped, and the next run continues from the last finished step.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        Demo(config).run()
    except DemoFailed as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo interrupted; rerun to continue where it stopped", file=sys.stderr)
        return 130
    return 0


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
