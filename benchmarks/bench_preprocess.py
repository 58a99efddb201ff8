"""Speed and peak memory of `deepicd preprocess` against a plain pandas pipeline, on synthetic MIMIC-IV.

The baseline is what one writes first: `pandas.read_csv` every table whole,
merge notes with the ICD-10 first codes, then one `str.extract` regex per
section (plus one to cut the discharge exam) and join the sections, all in one
process (`workers=0`). The stage streams the tables, cuts each note in one pass,
and by default (`workers=2`) cuts notes in two worker processes while the
ICD-10-CM release loads in a third. Both then run the same code for splits,
labels, VERL rows, report and manifest, and the benchmark checks that the two
write byte-identical tables.

Each pipeline runs in its own child process, measured by a wrapper process:
wall time, CPU time and peak RSS (`getrusage(RUSAGE_CHILDREN).ru_maxrss` of
the wrapper, whose only child is the pipeline).

    python benchmarks/bench_preprocess.py --admissions 30000
    python benchmarks/bench_preprocess.py --admissions 330000 --skip-baseline
"""

from __future__ import annotations

import argparse
import json
import re
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def run_stage(data: Path, out: Path) -> None:
    from deepicd.preprocess import load_preprocess_config, run

    run(load_preprocess_config("default", [f"mimic_dir={data}", f"out={out}", "progress=false"]))


def pandas_collect(inputs, config):
    """The baseline's reading and note extraction: whole tables in pandas, one regex per section."""
    import numpy as np
    import pandas as pd

    from deepicd.mimic import sections
    from deepicd.mimic.collect import Collected, Kept

    admissions = pd.read_csv(inputs.admissions).drop_duplicates("hadm_id")
    patients = pd.read_csv(inputs.patients)
    dx = pd.read_csv(inputs.diagnoses, dtype={"icd_code": str})
    notes = pd.read_csv(inputs.discharge)

    dx["icd_code"] = dx["icd_code"].fillna("").str.strip().str.replace(".", "", regex=False)
    dx = dx.sort_values(["hadm_id", "seq_num"], kind="stable")
    first = dx.groupby("hadm_id", sort=False).first()
    has_codes = admissions["hadm_id"].isin(first.index)
    first_of = admissions["hadm_id"].map(first["icd_version"].where(first["seq_num"] == 1))
    code_of = admissions["hadm_id"].map(first["icd_code"].where(first["seq_num"] == 1)).fillna("")
    icd9 = has_codes & (first_of == 9)
    icd10 = has_codes & (first_of == 10) & (code_of != "")
    has_note = admissions["hadm_id"].isin(notes["hadm_id"])
    codes = dx[(dx["icd_version"] == 10) & (dx["icd_code"] != "")].groupby("hadm_id")["icd_code"].agg(list)

    # admission notes of every discharge summary first, then joined with the targets
    notes = notes.sort_values(["hadm_id", "note_seq", "note_id"]).drop_duplicates("hadm_id").reset_index(drop=True)
    headers = "|".join(re.escape(h) for h in sections.SECTION_HEADERS)
    fields = "|".join(re.escape(f) for f in sections.BLOCK_FIELDS)
    stop = rf"(?=\n[ \t]*(?:(?:{headers}):[ \t]*(?:\n|$)|(?:{fields}):)|\Z)"
    bodies = {}
    for key in sections.ADMISSION_SECTIONS:
        names = "|".join(re.escape(h) for h, k in sections.SECTION_HEADERS.items() if k == key)
        body = notes["text"].str.extract(rf"(?:^|\n)[ \t]*(?:{names}):[ \t]*\n(.*?){stop}", flags=re.S)[0]
        body = body.fillna("")
        if key == "physical_exam":
            body = body.str.replace(sections._DISCHARGE_EXAM.pattern + r".*", "", flags=re.S | re.I | re.M,
                                    regex=True)
        body = body.str.replace(r"[ \t]+\n", "\n", regex=True).str.replace(r"\n{2,}", "\n", regex=True).str.strip()
        bodies[key] = body.where(body.str.contains(r"[A-Za-z0-9]", regex=True), "")
    present = pd.DataFrame({key: body != "" for key, body in bodies.items()})
    text = pd.Series([""] * len(notes), index=notes.index)
    for key, body in bodies.items():
        piece = sections.TITLES[key] + ": " + body
        text = text.where(body == "", text.where(text == "", text + "\n\n") + piece)
    notes = pd.concat([notes[["hadm_id", "note_id"]].assign(note=text), present], axis=1)

    df = admissions[icd10 & has_note].assign(first_code=code_of[icd10 & has_note])
    df = df.merge(notes, on="hadm_id").sort_values("hadm_id").reset_index(drop=True)
    present = df[list(sections.ADMISSION_SECTIONS)]
    keep = present[list(sections.REQUIRED_ANY)].any(axis=1).to_numpy()
    text = df["note"]

    kept = df[keep]
    n_adm = len(admissions)
    funnel = [
        ("no diagnosis codes", int((~has_codes).sum())),
        ("first code (seq_num 1) is ICD-9", int(icd9.sum())),
        ("no usable ICD-10 first code (no seq_num 1 row or empty code)", int((has_codes & ~icd9 & ~icd10).sum())),
        ("no discharge note", int((icd10 & ~has_note).sum())),
        ("no chief complaint, present illness or medical history", int((~keep).sum())),
    ]
    gender = patients.set_index("subject_id")["gender"]
    age = patients.set_index("subject_id")["anchor_age"]
    section_lists = [tuple(k for k in sections.ADMISSION_SECTIONS if row[k])
                     for row in present[keep].to_dict("records")]
    subjects = kept["subject_id"].to_numpy(np.int64)
    return Collected(
        Kept(
            subject_id=subjects, hadm_id=kept["hadm_id"].to_numpy(np.int64),
            note_id=kept["note_id"].tolist(), text=text[keep].tolist(),
            first_code=kept["first_code"].tolist(),
            codes=[list(c) for c in kept["hadm_id"].map(codes)],
            sections=section_lists,
            admission_type=[t if isinstance(t, str) and t else None for t in kept["admission_type"]],
            gender=[gender.get(s) for s in subjects], anchor_age=[int(age[s]) for s in subjects],
        ),
        n_adm, funnel, {},
    )


def run_pandas_baseline(data: Path, out: Path) -> None:
    """The stage with its reading and extraction replaced by `pandas_collect`; same outputs otherwise."""
    import deepicd.preprocess as stage

    # One process, as a first implementation runs: the release is parsed in line, not in a side process.
    config = stage.load_preprocess_config("default", [f"mimic_dir={data}", f"out={out}", "progress=false", "workers=0"])
    stage.collect = pandas_collect
    stage.run(config)


def _tree_rss_mb(root: int) -> float:
    """Summed resident memory of a process and all its descendants, from /proc (Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    total_kb = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total_kb / 1024


def measure(engine: str, data: Path, out: Path) -> dict:
    """Run one engine in a child process: wall and CPU seconds, peak RSS of the largest process
    (getrusage) and the sampled peak of the whole process tree (the stage uses a side process)."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, str(HERE), "_engine", engine, str(data), str(out)])
    tree_peak = 0.0
    while child.poll() is None:
        if Path("/proc").is_dir():
            tree_peak = max(tree_peak, _tree_rss_mb(child.pid))
        time.sleep(0.05)
    if child.returncode != 0:
        raise SystemExit(f"{engine} failed with exit code {child.returncode}")
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"engine": engine, "wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "peak_tree_rss_mb": round(tree_peak, 1)}


def measured(engine: str, data: Path, out: Path) -> dict:
    """`measure` in a fresh wrapper process, so RUSAGE_CHILDREN sees exactly one pipeline."""
    result = subprocess.run([sys.executable, str(HERE), "_measure", engine, str(data), str(out)],
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(ours: Path, baseline: Path) -> str:
    names = ["train.parquet", "val.parquet", "test.parquet", "verl/train.parquet", "verl/val.parquet",
             "verl/test.parquet", "labels.csv", "splits.csv"]
    differ = [n for n in names if (ours / n).read_bytes() != (baseline / n).read_bytes()]
    return "outputs byte-identical: " + ("yes" if not differ else "NO, differ: " + ", ".join(differ))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admissions", type=int, default=30_000, help="synthetic admissions to generate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--length", default="short", choices=("short", "long"), help="synthetic note length")
    parser.add_argument("--work", type=Path, default=None, help="folder for data and outputs (default: a temp dir)")
    parser.add_argument("--skip-baseline", action="store_true", help="measure the stage only")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per pipeline, alternating; medians are reported (use 3+ on a shared machine)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        data = work / f"synth-{args.admissions}-{args.length}-{args.seed}"
        if not data.exists():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "deepicd", "synth-mimic", "--out", str(data), "--admissions",
                            str(args.admissions), "--seed", str(args.seed), "--length", args.length], check=True)
            print(f"synth-mimic {args.admissions} admissions: {time.perf_counter() - started:.1f} s")
        size = sum(p.stat().st_size for p in data.rglob("*.csv.gz"))
        print(f"input: {data} ({size / 1e6:.1f} MB gzipped), CPU cores: {len(os.sched_getaffinity(0))}, "
              f"load average before: {os.getloadavg()[0]:.1f}")
        engines = ("stage",) + (() if args.skip_baseline else ("pandas",))
        runs: dict[str, list[dict]] = {engine: [] for engine in engines}
        for _ in range(args.repeat):
            for engine in engines:
                out = work / f"out-{engine}-{args.admissions}-{args.length}"
                if out.exists():
                    shutil.rmtree(out)
                runs[engine].append(measured(engine, data, out))
                print(json.dumps(runs[engine][-1]))
        medians = {engine: {key: _median([run[key] for run in rows])
                            for key in ("wall_s", "cpu_s", "peak_rss_mb", "peak_tree_rss_mb")}
                   for engine, rows in runs.items()}
        print(f"\nmedians of {args.repeat} run(s):\n")
        print("| pipeline | wall s | CPU s (all processes) | peak RSS, largest process MB | peak RSS, all processes MB |")
        print("|---|---:|---:|---:|---:|")
        for engine, row in medians.items():
            print(f"| {engine} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['peak_rss_mb']:.0f} | "
                  f"{row['peak_tree_rss_mb']:.0f} |")
        if len(medians) == 2:
            stage, base = medians["stage"], medians["pandas"]
            print(f"\nspeed-up (wall) {base['wall_s'] / stage['wall_s']:.2f}x, "
                  f"(CPU) {base['cpu_s'] / stage['cpu_s']:.2f}x; peak RSS, all processes: "
                  f"{base['peak_tree_rss_mb'] / stage['peak_tree_rss_mb']:.2f}x less")
            print(compare(work / f"out-stage-{args.admissions}-{args.length}", work / f"out-pandas-{args.admissions}-{args.length}"))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_engine":
        engine, data, out = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
        (run_stage if engine == "stage" else run_pandas_baseline)(data, out)
    elif len(sys.argv) > 1 and sys.argv[1] == "_measure":
        print(json.dumps(measure(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))
    else:
        main()
