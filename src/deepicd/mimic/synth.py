"""A synthetic MIMIC-IV: the real folder layout, columns and note format, with made-up patients.

MIMIC-IV sits behind a data use agreement, so tests, benchmarks and the CPU demo
need a stand-in that exercises every path of `deepicd preprocess`: the
discharge-summary layout with its quirks (a header block, sections separated by
a line holding one space, `___` spans, `Social History:\\n___\\nFamily History:`
without a separator, physical exams that also hold the discharge exam, with or
without a blank line), several admissions per patient, ICD-9 admissions,
admissions without a note or without codes, padded codes and diagnosis rows out
of seq_num order.

The text is built so that learning is possible and leakage is visible: the
admission-time sections speak of the first code's chapter (complaints,
symptoms, findings, medications) and its tabular text (description, inclusion
terms, category), while the discharge-time sections name the answer outright
("Discharge Diagnosis:" with the description).

First codes are real ICD-10-CM leaf codes of the release, drawn with a
Zipf-Mandelbrot (long-tailed) frequency over a vocabulary of `codes` distinct
codes (`synth_codes`); the notes are written by `synth_notes`. Output is a pure
function of the arguments: the same seed gives byte-identical files (gzip
headers carry no time stamp).
"""

from __future__ import annotations

import bisect
import datetime as dt
import gzip
import io
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv

from deepicd.mimic import phrases
from deepicd.mimic.synth_codes import (
    CodeProfile, choose_grouped_vocabulary, choose_vocabulary, cumulative, default_vocabulary, profile, zipf_weights,
)
from deepicd.mimic.synth_notes import Admission, NoteWriter
from deepicd.mimic.tables import TABLE_COLUMNS
from deepicd.schema import one_of, require, require_given

LENGTHS = ("short", "long")
_CHUNK_ADMISSIONS = 20_000
_GZIP_LEVEL = 4  # fast enough for 330k notes in about a minute; MIMIC's own level does not matter
_WRITE_OPTIONS = pacsv.WriteOptions(quoting_style="needed", quoting_header="none")


def _timestamp(moment: dt.datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else None


class _Generator:
    """Draws patients, admissions, codes and notes from one random stream, chunk by chunk."""

    def __init__(self, admissions: int, seed: int, codes: int | None, icd9_fraction: float, length: str,
                 per_category: int = 1, per_chapter: int = 1):
        self.rng = random.Random(seed)
        self.total = admissions
        self.icd9_fraction = icd9_fraction
        size = codes if codes is not None else default_vocabulary(admissions)
        if per_category == 1 and per_chapter == 1:
            chosen = choose_vocabulary(self.rng, size)
        else:
            chosen = choose_grouped_vocabulary(self.rng, size, per_category, per_chapter)
        self.vocabulary = [profile(code) for code in chosen]
        self.cumulative = cumulative(zipf_weights(size))
        self.comorbid = [profile(code) for code in phrases.COMORBIDITIES]
        self.note = NoteWriter(self.rng, long=length == "long")
        self.subject_ids = sorted(self.rng.sample(range(10_000_000, 20_000_000), admissions))
        self.hadm_ids = self.rng.sample(range(20_000_000, 30_000_000), admissions)

    def chunks(self) -> Iterator[dict[str, pa.Table]]:
        made, patient = 0, 0
        while made < self.total:
            tables: dict[str, list[dict]] = {"patients": [], "admissions": [], "diagnoses_icd": [], "discharge": []}
            stop = min(self.total, made + _CHUNK_ADMISSIONS)
            while made < stop:
                count = min(self._admissions_per_patient(), self.total - made)
                self._patient(self.subject_ids[patient], self.hadm_ids[made: made + count], tables)
                made += count
                patient += 1
            yield {name: _table(name, rows) for name, rows in tables.items()}

    def _admissions_per_patient(self) -> int:
        count = 1
        while count < 12 and self.rng.random() < 0.45:
            count += 1
        return count

    def _patient(self, subject_id: int, hadm_ids: list[int], tables: dict[str, list[dict]]) -> None:
        rng = self.rng
        first_first = self._draw_first()
        sex = "F" if first_first.chapter == 15 or rng.random() < 0.5 else "M"
        age = rng.randint(18, 44) if first_first.chapter == 15 else rng.randint(18, 91)
        anchor_year = rng.randint(2110, 2190)
        group = rng.choice(("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022"))
        tables["patients"].append({
            "subject_id": subject_id, "gender": sex, "anchor_age": age, "anchor_year": anchor_year,
            "anchor_year_group": group, "dod": None,
        })
        moment = dt.datetime(anchor_year, 1, 1) + dt.timedelta(days=rng.randint(0, 300), minutes=rng.randint(0, 1439))
        history = rng.sample(self.comorbid, rng.randint(1, 5))
        notes = 0
        for index, hadm_id in enumerate(sorted(hadm_ids)):
            first = first_first if index == 0 else self._draw_first()
            if first.chapter == 15 and sex == "M":
                first = self._draw_first()
            stay = dt.timedelta(days=rng.randint(1, 12), hours=rng.randint(0, 23))
            adm = Admission(
                subject_id, hadm_id, moment, moment + stay, first, [],
                9 if rng.random() < self.icd9_fraction else 10,
                has_note=rng.random() >= 0.06, has_codes=rng.random() >= 0.01,
            )
            comorbid = [p for p in history if p.code != first.code]
            adm.codes = self._codes(adm, comorbid)
            self._rows(adm, tables)
            if adm.has_note:
                notes += 1
                tables["discharge"].append({
                    "note_id": f"{subject_id}-DS-{notes}", "subject_id": subject_id, "hadm_id": hadm_id,
                    "note_type": "DS", "note_seq": notes,
                    "charttime": _timestamp(adm.dischtime.replace(hour=0, minute=0, second=0)),
                    "storetime": _timestamp(adm.dischtime + dt.timedelta(hours=rng.randint(1, 30))),
                    "text": self.note(adm, sex, age, comorbid),
                })
            moment = adm.dischtime + dt.timedelta(days=rng.randint(20, 700))

    def _draw_first(self) -> CodeProfile:
        index = bisect.bisect_right(self.cumulative, self.rng.random())
        return self.vocabulary[index]

    def _codes(self, adm: Admission, comorbid: list[CodeProfile]) -> list[str]:
        rng = self.rng
        if adm.icd_version == 9:
            return rng.sample(phrases.ICD9_CODES, rng.randint(1, 8))
        codes = [adm.first.code] + [p.code for p in comorbid]
        if rng.random() < 0.3:
            extra = self._draw_first().code
            if extra not in codes:
                codes.append(extra)
        return codes

    def _rows(self, adm: Admission, tables: dict[str, list[dict]]) -> None:
        rng = self.rng
        tables["admissions"].append({
            "subject_id": adm.subject_id, "hadm_id": adm.hadm_id,
            "admittime": _timestamp(adm.admittime), "dischtime": _timestamp(adm.dischtime),
            "deathtime": None,
            "admission_type": rng.choice(("EW EMER.", "URGENT", "OBSERVATION ADMIT", "ELECTIVE", "DIRECT EMER.")),
            "admit_provider_id": f"P{rng.randint(10000, 99999)}",
            "admission_location": rng.choice(("EMERGENCY ROOM", "PHYSICIAN REFERRAL", "TRANSFER FROM HOSPITAL")),
            "discharge_location": rng.choice(("HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY")),
            "insurance": rng.choice(("Medicare", "Medicaid", "Private", "Other")),
            "language": "English", "marital_status": rng.choice(("MARRIED", "SINGLE", "WIDOWED", "DIVORCED")),
            "race": rng.choice(("WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO - PUERTO RICAN", "ASIAN",
                                "UNKNOWN")),
            "edregtime": _timestamp(adm.admittime - dt.timedelta(hours=4)), "edouttime": _timestamp(adm.admittime),
            "hospital_expire_flag": 0,
        })
        if not adm.has_codes:
            return
        rows = [
            {
                "subject_id": adm.subject_id, "hadm_id": adm.hadm_id, "seq_num": seq,
                "icd_code": code.ljust(7) if rng.random() < 0.05 else code, "icd_version": adm.icd_version,
            }
            for seq, code in enumerate(adm.codes, start=1)
        ]
        if len(rows) > 1 and rng.random() < 0.15:
            rng.shuffle(rows)
        tables["diagnoses_icd"].extend(rows)


_SCHEMAS = {
    "patients": {"subject_id": pa.int64(), "anchor_age": pa.int64(), "anchor_year": pa.int64()},
    "admissions": {"subject_id": pa.int64(), "hadm_id": pa.int64(), "hospital_expire_flag": pa.int64()},
    "diagnoses_icd": {"subject_id": pa.int64(), "hadm_id": pa.int64(), "seq_num": pa.int64(),
                      "icd_version": pa.int64()},
    "discharge": {"subject_id": pa.int64(), "hadm_id": pa.int64(), "note_seq": pa.int64()},
}

_PATHS = {
    "patients": "hosp/patients.csv.gz",
    "admissions": "hosp/admissions.csv.gz",
    "diagnoses_icd": "hosp/diagnoses_icd.csv.gz",
    "discharge": "note/discharge.csv.gz",
}


def _table(name: str, rows: list[dict]) -> pa.Table:
    columns = TABLE_COLUMNS[name].all_columns
    types = _SCHEMAS[name]
    arrays = [pa.array([row[col] for row in rows], type=types.get(col, pa.string())) for col in columns]
    return pa.Table.from_arrays(arrays, names=list(columns))


@dataclass
class SynthConfig:
    """What `deepicd synth-mimic` writes: where, how many admissions, which codes, how long the notes are."""

    out: str = ""  # folder to create, with hosp/ and note/ (--out)
    admissions: int = 1000  # rows of admissions.csv.gz; about 6% get no discharge note and 1% no codes
    seed: int = 0  # the same seed and settings give byte-identical files
    codes: int | None = None  # distinct first codes, long-tailed; None: one per 15 admissions, at most 6,400
    icd9_fraction: float = 0.15  # share of admissions coded in ICD-9 (excluded by preprocess, as in the paper)
    length: str = "short"  # "short" (admission notes of ~100-250 words, for small models) or "long"
    codes_per_category: int = 1  # >1 with categories_per_chapter: codes drawn in clusters, so the levels differ
    categories_per_chapter: int = 1  # categories drawn per chapter when the codes are clustered
    overwrite: bool = False  # replace what OUT holds when it is not this very data (--overwrite)

    def __post_init__(self) -> None:
        where = "synth-mimic setting"
        require(self.admissions >= 1, where, "admissions", "must be at least 1", self.admissions)
        require(0.0 <= self.icd9_fraction <= 1.0, where, "icd9_fraction", "must lie in [0, 1]", self.icd9_fraction)
        self.length = one_of(LENGTHS, self.length, "length", where)


def run(config: SynthConfig, progress: Callable[[int], None] | None = None) -> SynthResult:
    """Write a synthetic MIMIC-IV folder (hosp/ and note/, and its manifest.json).

    With `codes_per_category` and `categories_per_chapter` above 1 the codes are
    drawn in clusters (`synth_codes.choose_grouped_vocabulary`) so that chapter,
    category and full-code scores differ; 1 and 1 draw every code on its own.
    `progress` is called with the number of admissions written after each chunk.
    The same settings again into the same folder do nothing; other settings
    there need `overwrite` (deepicd.run_folder).
    """
    from deepicd import manifest, run_folder

    require_given(config, "synth-mimic setting", {"out": "--out"})
    c, out = config, Path(config.out)
    settings = asdict(config)
    if run_folder.previous_run(out, "synth-mimic", settings, {}, overwrite=c.overwrite,
                               ignore=("out", "overwrite")) is not None:
        return SynthResult(out, c.admissions, already_done=True)
    generator = _Generator(c.admissions, c.seed, c.codes, c.icd9_fraction, c.length, c.codes_per_category,
                           c.categories_per_chapter)
    with manifest.staged_directory(out, replace=c.overwrite or out.is_dir()) as staging:
        (staging / "hosp").mkdir(parents=True)
        (staging / "note").mkdir()
        sinks = {name: _GzipCsv(staging / path) for name, path in _PATHS.items()}
        written = 0
        for tables in generator.chunks():
            for name, table in tables.items():
                sinks[name].write(table)
            written += tables["admissions"].num_rows
            if progress is not None:
                progress(written)
        for sink in sinks.values():
            sink.close()
        entry = manifest.record("synth-mimic", config=settings, seed=c.seed, result={"admissions": written},
                                packages=("deepicd", "pyarrow", "simple-icd-10-cm"))
        manifest.write(staging, entry, outputs=manifest.describe_outputs(staging))
    return SynthResult(out, c.admissions)


@dataclass
class SynthResult:
    out: Path
    admissions: int
    already_done: bool = False  # OUT held this very data; nothing was written


class _GzipCsv:
    """A CSV written in chunks into one deterministic gzip stream (no name, no time stamp in the header)."""

    def __init__(self, path: Path):
        self._file = open(path, "wb")
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._file, compresslevel=_GZIP_LEVEL, mtime=0)
        self._header = True

    def write(self, table: pa.Table) -> None:
        buffer = io.BytesIO()
        options = _WRITE_OPTIONS if self._header else pacsv.WriteOptions(
            include_header=False, quoting_style="needed")
        pacsv.write_csv(table, buffer, write_options=options)
        self._gzip.write(buffer.getvalue())
        self._header = False

    def close(self) -> None:
        self._gzip.close()
        self._file.close()
