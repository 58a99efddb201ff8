"""Hand-written MIMIC-IV folders for tests: real column names, gzipped CSVs, discharge summaries in template form."""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path

from deepicd.preprocess import load_preprocess_config, run

PATIENT_COLUMNS = ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
ADMISSION_COLUMNS = [
    "subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type", "admit_provider_id",
    "admission_location", "discharge_location", "insurance", "language", "marital_status", "race",
    "edregtime", "edouttime", "hospital_expire_flag",
]
DIAGNOSIS_COLUMNS = ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]
NOTE_COLUMNS = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]

HEADER_BLOCK = (
    " \nName:  ___                     Unit No:   ___\n \n"
    "Admission Date:  ___              Discharge Date:   ___\n \n"
    "Date of Birth:  ___             Sex:   F\n \nService: MEDICINE\n \n"
    "Allergies: \n{allergies}\n \nAttending: ___.\n"
)


def summary(sections: list[tuple[str, str]], allergies: str = "Penicillins") -> str:
    """A discharge summary: the header block, then `Header:\\nbody` sections separated by a one-space line."""
    parts = [HEADER_BLOCK.format(allergies=allergies)]
    parts += [f"{header}:\n{body}\n" for header, body in sections]
    return " \n".join(parts)


def standard_sections(
    complaint: str = "chest pain",
    illness: str = "67F with crushing substernal chest pressure since this morning.",
    history: str = "- hypertension\n- hyperlipidemia",
    diagnosis: str = "NSTEMI",
) -> list[tuple[str, str]]:
    """Every template section, the discharge-time ones naming `diagnosis`."""
    return [
        ("Chief Complaint", complaint),
        ("Major Surgical or Invasive Procedure", "Cardiac catheterization"),
        ("History of Present Illness", illness),
        ("Past Medical History", history),
        ("Social History", "Lives with spouse. No tobacco."),
        ("Family History", "Father with MI at 60."),
        ("Physical Exam", "ADMISSION EXAM:\nVS: T 98.1 HR 88 BP 150/90\nGeneral: diaphoretic\n \n"
                          "DISCHARGE EXAM:\nVS: T 98.0 HR 70 BP 120/70\nGeneral: comfortable, chest pain resolved"),
        ("Pertinent Results", f"troponin 2.3 consistent with {diagnosis}"),
        ("Brief Hospital Course", f"# {diagnosis}: taken to the cath lab, stent placed.\n \n# HTN: continued."),
        ("Medications on Admission", "1. Aspirin 81 mg PO DAILY"),
        ("Discharge Medications", "1. Aspirin 81 mg PO DAILY\n2. Clopidogrel 75 mg PO DAILY"),
        ("Discharge Disposition", "Home"),
        ("Discharge Diagnosis", f"Primary: {diagnosis}"),
        ("Discharge Condition", "Mental Status: Clear and coherent."),
        ("Discharge Instructions", f"You were admitted for {diagnosis}."),
        ("Followup Instructions", "___"),
    ]


def write_csv_gz(path: Path, header: list[str], rows: list[list], raw_tail: bytes = b"") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as handle:
        handle.write(buffer.getvalue().encode("utf-8") + raw_tail)
    return path


@dataclass
class Mimic:
    """Rows of the four tables; `write` fills the columns the tests do not care about."""

    patients: dict[int, tuple[str, int]] = field(default_factory=dict)  # subject -> (gender, age)
    admissions: list[tuple[int, int]] = field(default_factory=list)  # (subject, hadm)
    diagnoses: list[tuple[int, int, int, str, int]] = field(default_factory=list)
    notes: list[tuple[str, int, int, int, str]] = field(default_factory=list)  # (note_id, subject, hadm, seq, text)

    def admission(self, subject: int, hadm: int, codes: list[str] | None = None, version: int = 10,
                  text: str | None = None, gender: str = "F", age: int = 60) -> None:
        """One admission with its codes (seq_num 1, 2, ...) and, unless `text` is None, its note."""
        self.patients.setdefault(subject, (gender, age))
        self.admissions.append((subject, hadm))
        for seq, code in enumerate(codes or [], start=1):
            self.diagnoses.append((subject, hadm, seq, code, version))
        if text is not None:
            count = sum(1 for n in self.notes if n[1] == subject) + 1
            self.notes.append((f"{subject}-DS-{count}", subject, hadm, count, text))

    def write(self, root: Path) -> Path:
        write_csv_gz(root / "hosp" / "patients.csv.gz", PATIENT_COLUMNS,
                     [[s, g, a, 2150, "2017 - 2019", ""] for s, (g, a) in self.patients.items()])
        write_csv_gz(root / "hosp" / "admissions.csv.gz", ADMISSION_COLUMNS,
                     [[s, h, "2150-01-01 10:00:00", "2150-01-05 12:00:00", "", "EW EMER.", "P1", "EMERGENCY ROOM",
                       "HOME", "Medicare", "English", "MARRIED", "WHITE", "", "", 0] for s, h in self.admissions])
        write_csv_gz(root / "hosp" / "diagnoses_icd.csv.gz", DIAGNOSIS_COLUMNS, [list(r) for r in self.diagnoses])
        write_csv_gz(root / "note" / "discharge.csv.gz", NOTE_COLUMNS,
                     [[i, s, h, "DS", q, "2150-01-05 00:00:00", "2150-01-05 13:00:00", t]
                      for i, s, h, q, t in self.notes])
        return root


def preprocess(mimic_dir: Path, out: Path, *overrides: str) -> Path:
    """Run the stage in-process (no worker processes, workers=0, unless overridden); returns the output folder."""
    config = load_preprocess_config("default", [f"mimic_dir={mimic_dir}", f"out={out}", "progress=false", "workers=0",
                                     *overrides])
    return run(config).out
