"""The synthetic data's discharge summaries, in the MIMIC-IV-Note template.

A note is built section by section from an admission's codes: the
admission-time sections use words typical of the first code's chapter and
quote its tabular text (the signal a model can learn), the discharge-time
sections name the answer (so leakage would show). Layout quirks of real notes
are reproduced on purpose: the header block, one-space separator lines,
`Social History:\n___\nFamily History:` without a separator, physical exams
that go on into the discharge exam with or without a blank line, and sections
that are sometimes missing.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from deepicd.mimic import phrases
from deepicd.mimic.synth_codes import CodeProfile, prose


@dataclass
class Admission:
    subject_id: int
    hadm_id: int
    admittime: dt.datetime
    dischtime: dt.datetime
    first: CodeProfile  # drives the note text (for ICD-9 admissions too)
    codes: list[str]
    icd_version: int
    has_note: bool
    has_codes: bool


class NoteWriter:
    """Builds one discharge summary in MIMIC-IV-Note layout from an admission's codes."""

    def __init__(self, rng: random.Random, long: bool):
        self.rng = rng
        self.long = long
        self.others = sorted(phrases.CHAPTERS)

    def __call__(self, adm: Admission, sex: str, age: int, comorbid: list[CodeProfile]) -> str:
        rng, choice, first = self.rng, self.rng.choice, adm.first
        words = phrases.CHAPTERS.get(first.chapter, phrases.CHAPTERS[18])
        title = "Mr." if sex == "M" else "Ms."
        pmh_names = [prose(p.description) for p in comorbid] or ["no significant past medical history"]
        header = (
            f" \nName:  ___                     Unit No:   ___\n \n"
            f"Admission Date:  ___              Discharge Date:   ___\n \n"
            f"Date of Birth:  ___             Sex:   {sex}\n \nService: {words.service}\n \n"
            f"Allergies: \n{choice(phrases.ALLERGIES)}\n \nAttending: ___.\n"
        )
        parts = [header]
        drop_core = rng.random() < 0.02  # a note with none of the sections the task needs
        complaint = self._complaint(words, first)
        if not drop_core and rng.random() < 0.97:
            parts.append(f"Chief Complaint:\n{complaint}\n")
        if rng.random() < 0.97:
            parts.append(f"Major Surgical or Invasive Procedure:\n{choice(phrases.PROCEDURES)}\n")
        if not drop_core and rng.random() < 0.98:
            parts.append(f"History of Present Illness:\n{self._hpi(words, first, sex, age, pmh_names)}\n")
        if not drop_core and rng.random() < 0.97:
            parts.append(f"Past Medical History:\n{self._pmh(pmh_names)}\n")
        parts.append(self._social_family())
        parts.append(f"Physical Exam:\n{self._exam(words, first)}\n")
        parts.append(f"Pertinent Results:\n{self._results(words)}\n")
        parts.append(f"Brief Hospital Course:\n{self._course(title, age, complaint, first, comorbid)}\n")
        home_meds = self._meds(words, comorbid)
        if rng.random() < 0.95:
            parts.append(
                "Medications on Admission:\nThe Preadmission Medication list is accurate and complete.\n"
                + home_meds + "\n"
            )
        parts.append(f"Discharge Medications:\n{home_meds}\n{len(home_meds.splitlines()) + 1}. "
                     f"{choice(words.medications)}\n")
        parts.append(f"Discharge Disposition:\n{choice(phrases.DISPOSITIONS)}\n")
        secondary = ", ".join(prose(p.description) for p in comorbid[:4]) or "none"
        parts.append(f"Discharge Diagnosis:\nPrimary: {first.description}\nSecondary: {secondary}\n")
        parts.append(
            "Discharge Condition:\nMental Status: Clear and coherent.\n"
            "Level of Consciousness: Alert and interactive.\nActivity Status: Ambulatory - Independent.\n"
        )
        parts.append(
            f"Discharge Instructions:\nDear {title} ___,\nYou were admitted to ___ because of "
            f"{prose(first.description)}. Please take your medications as prescribed and keep your "
            "follow-up appointments.\nSincerely,\nYour ___ Care Team\n"
        )
        parts.append("Followup Instructions:\n___\n")
        return " \n".join(parts)

    def _complaint(self, words: phrases.ChapterPhrases, first: CodeProfile) -> str:
        roll = self.rng.random()
        if roll < 0.7:
            return self.rng.choice(words.complaints)
        if roll < 0.9:
            return f"{self.rng.choice(words.complaints)}, {first.keyword}"
        return first.keyword

    def _hpi(self, words: phrases.ChapterPhrases, first: CodeProfile, sex: str, age: int, pmh: list[str]) -> str:
        rng, choice = self.rng, self.rng.choice
        pronoun = "He" if sex == "M" else "She"
        symptoms = rng.sample(words.symptoms, 2) if len(words.symptoms) > 1 else list(words.symptoms) * 2
        if rng.random() < 0.1:  # noise: a symptom typical of another chapter
            symptoms[1] = choice(phrases.CHAPTERS[choice(self.others)].symptoms)
        history = ", ".join(pmh[:3])
        text = [
            f"{age} y/o {sex} with a history of {history} who presents with {symptoms[0]} "
            f"and {symptoms[1]} for {rng.randint(1, 10)} days."
        ]
        roll = rng.random()
        if roll < 0.9:
            lead = choice(("Outside hospital records are concerning for", "Prior workup raised concern for",
                           "Referred for evaluation of possible", "Initial assessment suggested"))
            clue = first.clues[0] if rng.random() < 0.6 else choice(first.clues)
            text.append(f"{lead} {clue}.")
        text.append(
            f"In the ED, initial vitals: T {rng.randint(970, 1025) / 10} HR {rng.randint(60, 125)} "
            f"BP {rng.randint(90, 170)}/{rng.randint(50, 95)} RR {rng.randint(12, 26)} "
            f"O2 {rng.randint(88, 100)}% RA. ED workup: {choice(words.tests)}."
        )
        if self.long:
            text.append(
                f"{pronoun} reports {choice(words.symptoms)} over the past weeks, with no relief at home. "
                f"Review of systems is otherwise negative for headache, vision changes, chest pain, "
                f"abdominal pain, dysuria and rash, except as noted above. {pronoun} was given "
                f"{choice(words.medications).split(' PO')[0]} in the ED and admitted for further management."
            )
        return " ".join(text)

    def _pmh(self, pmh: list[str]) -> str:
        lines = [f"- {name}" for name in pmh]
        if self.long:
            lines += ["PAST SURGICAL HISTORY:", "- s/p cholecystectomy ___", "- s/p appendectomy"]
        return "\n".join(lines)

    def _social_family(self) -> str:
        rng, choice = self.rng, self.rng.choice
        social = "___" if rng.random() < 0.6 else choice(phrases.SOCIAL_HISTORY)
        family = choice(phrases.FAMILY_HISTORY)
        roll = rng.random()
        if roll < 0.6:  # the quirk: no separator line between the two sections
            return f"Social History:\n{social}\nFamily History:\n{family}\n"
        if roll < 0.95:
            return f"Social History:\n{social}\n \nFamily History:\n{family}\n"
        return f"Social History:\n{social}\n"

    def _vitals(self) -> str:
        r = self.rng.randint
        return (f"VS: T {r(970, 1010) / 10} HR {r(55, 120)} BP {r(95, 165)}/{r(50, 95)} RR {r(12, 24)} "
                f"O2 {r(90, 100)}% RA")

    def _exam(self, words: phrases.ChapterPhrases, first: CodeProfile) -> str:
        rng, choice = self.rng, self.rng.choice
        label = choice(phrases.ADMISSION_EXAM_LABELS)
        admission = [label] if label else []
        admission += [self._vitals(), f"General: {choice(phrases.GENERAL_APPEARANCE)}"]
        if self.long:
            admission += ["HEENT: NCAT, MMM, EOMI", "Neck: supple, no LAD", "CV: RRR, no m/r/g",
                          "Lungs: CTAB anteriorly", "Abd: soft, NT/ND, +BS"]
        admission.append(f"Exam notable for {choice(words.findings)}.")
        admission.append("Neuro: A&Ox3, moving all extremities")
        roll = rng.random()
        if roll < 0.15:
            return "\n".join(admission)
        discharge = "\n".join([
            choice(phrases.DISCHARGE_EXAM_LABELS), self._vitals(), "General: comfortable, NAD",
            f"Improved; findings consistent with resolving {prose(first.description)}.",
        ])
        separator = "\n \n" if roll < 0.55 else "\n"
        return "\n".join(admission) + separator + discharge

    def _results(self, words: phrases.ChapterPhrases) -> str:
        r = self.rng.randint
        lines = [
            "ADMISSION LABS:",
            f"___ 07:{r(10, 59)}AM BLOOD WBC-{r(30, 190) / 10} RBC-{r(28, 52) / 10} Hgb-{r(70, 160) / 10} "
            f"Hct-{r(22, 48)}.{r(0, 9)} Plt ___",
            f"___ 07:{r(10, 59)}AM BLOOD Glucose-{r(70, 350)} UreaN-{r(8, 60)} Creat-{r(6, 40) / 10} "
            f"Na-{r(128, 146)} K-{r(30, 55) / 10}",
            f"IMAGING: {self.rng.choice(words.tests)}.",
        ]
        if self.long:
            lines += [f"___ 06:{r(10, 59)}AM BLOOD ALT-{r(8, 90)} AST-{r(10, 95)} AlkPhos-{r(40, 200)} "
                      f"TotBili-{r(2, 30) / 10}" for _ in range(3)]
        return "\n".join(lines)

    def _course(self, title: str, age: int, complaint: str, first: CodeProfile,
                comorbid: list[CodeProfile]) -> str:
        text = (
            f"{title} ___ is a {age} year old with the above history admitted with {complaint}, "
            f"found to have {prose(first.description)}.\n \n# {first.description}: treated and improved "
            "over the course of the admission."
        )
        if self.long:
            text += "".join(f"\n \n# {p.description}: stable, home regimen continued." for p in comorbid)
        return text

    def _meds(self, words: phrases.ChapterPhrases, comorbid: list[CodeProfile]) -> str:
        rng = self.rng
        count = rng.randint(2, 6 if self.long else 3)
        pool = list(words.medications) + list(phrases.CHAPTERS[9].medications[:3]) * bool(comorbid)
        meds = rng.sample(pool, min(count, len(pool)))
        return "\n".join(f"{i}. {med}" for i, med in enumerate(meds, start=1))
