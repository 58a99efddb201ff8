"""Clinical phrases the synthetic generator draws from, grouped by ICD-10-CM chapter.

Synthetic notes must carry a learnable signal about the target: a tiny model
trained on a few hundred of them should at least find the chapter. Each chapter
therefore has its own complaints, symptoms, examination findings, home
medications, services and admission-time test results, so the words of a note
point to the chapter of its first code, while the code's own tabular text
(description, inclusion terms) points further down the hierarchy.

Chapter 20 (external causes) is never a first-listed diagnosis and has no entry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChapterPhrases:
    """Words a clinician would write on admission for a condition of one chapter."""

    complaints: tuple[str, ...]
    symptoms: tuple[str, ...]
    findings: tuple[str, ...]
    medications: tuple[str, ...]
    tests: tuple[str, ...]
    service: str


CHAPTERS: dict[int, ChapterPhrases] = {
    1: ChapterPhrases(
        complaints=("fever", "fevers and chills", "rigors", "infection", "fever and hypotension"),
        symptoms=(
            "fevers to 102F", "shaking chills", "night sweats", "malaise", "watery diarrhea",
            "productive cough", "dysuria", "lethargy", "poor oral intake", "sick contacts at home",
        ),
        findings=(
            "febrile and tachycardic", "warm extremities with flash capillary refill",
            "diaphoretic, appears ill", "lactate elevated to 4.1", "rigors observed at bedside",
        ),
        medications=("Ciprofloxacin 500 mg PO Q12H", "Fluconazole 200 mg PO DAILY", "Valacyclovir 1 g PO TID"),
        tests=("blood cultures drawn, lactate 3.8", "WBC 18.2 with bandemia", "procalcitonin elevated"),
        service="MEDICINE",
    ),
    2: ChapterPhrases(
        complaints=("mass", "weight loss", "abnormal imaging", "planned chemotherapy", "tumor"),
        symptoms=(
            "unintentional weight loss of 20 lbs", "early satiety", "a palpable mass", "night sweats",
            "progressive fatigue", "bone pain", "hemoptysis", "painless jaundice",
        ),
        findings=(
            "cachectic appearing", "firm nodular mass on palpation", "hepatomegaly",
            "supraclavicular lymphadenopathy", "port site clean, dry and intact",
        ),
        medications=("Ondansetron 8 mg PO Q8H PRN nausea", "Dexamethasone 4 mg PO DAILY", "Tamoxifen 20 mg PO DAILY"),
        tests=("CT showed a spiculated mass", "CEA elevated", "biopsy pending with concern for malignancy"),
        service="HEMATOLOGY/ONCOLOGY",
    ),
    3: ChapterPhrases(
        complaints=("anemia", "low blood counts", "easy bruising", "fatigue and pallor"),
        symptoms=(
            "easy bruising", "gum bleeding", "exertional fatigue", "pallor noted by family",
            "dark stools", "petechiae on the legs", "lightheadedness on standing",
        ),
        findings=("conjunctival pallor", "scattered petechiae", "splenomegaly", "ecchymoses on the forearms"),
        medications=("Ferrous sulfate 325 mg PO DAILY", "Folic acid 1 mg PO DAILY", "Cyanocobalamin 1000 mcg PO DAILY"),
        tests=("hemoglobin 6.8", "platelets 24", "low ferritin with microcytosis", "positive direct Coombs"),
        service="MEDICINE",
    ),
    4: ChapterPhrases(
        complaints=("hyperglycemia", "high blood sugar", "electrolyte abnormality", "weakness and thirst"),
        symptoms=(
            "polyuria and polydipsia", "blood sugars above 400 at home", "excessive thirst",
            "muscle cramps", "weight gain and cold intolerance", "palpitations and heat intolerance",
        ),
        findings=("dry mucous membranes", "fruity breath", "goiter", "delayed reflexes", "Kussmaul respirations"),
        medications=("Insulin glargine 20 units SC QHS", "Metformin 1000 mg PO BID", "Levothyroxine 88 mcg PO DAILY"),
        tests=("glucose 512 with anion gap 22", "HbA1c 11.2%", "sodium 121", "TSH markedly elevated"),
        service="MEDICINE",
    ),
    5: ChapterPhrases(
        complaints=("suicidal ideation", "agitation", "alcohol withdrawal", "depression", "psychosis"),
        symptoms=(
            "depressed mood", "auditory hallucinations", "paranoia", "heavy daily alcohol use",
            "tremulousness", "insomnia", "thoughts of self harm", "anxiety and panic attacks",
        ),
        findings=(
            "flat affect", "tremulous and diaphoretic", "poor eye contact", "tangential thought process",
            "CIWA score of 18",
        ),
        medications=("Sertraline 100 mg PO DAILY", "Quetiapine 50 mg PO QHS", "Lorazepam 1 mg PO Q6H PRN anxiety"),
        tests=("serum ethanol 310", "urine toxicology positive for benzodiazepines", "normal head CT"),
        service="PSYCHIATRY",
    ),
    6: ChapterPhrases(
        complaints=("seizure", "headache", "weakness", "altered mental status", "numbness"),
        symptoms=(
            "a witnessed generalized seizure", "severe headache", "tingling in both feet",
            "unilateral weakness", "difficulty walking", "tremor", "double vision", "confusion",
        ),
        findings=(
            "postictal and drowsy", "decreased sensation in a stocking distribution", "nuchal rigidity",
            "resting tremor with cogwheel rigidity", "tongue laceration",
        ),
        medications=("Levetiracetam 500 mg PO BID", "Gabapentin 300 mg PO TID", "Carbidopa-levodopa 25-100 mg PO TID"),
        tests=("EEG with epileptiform discharges", "MRI brain ordered", "lumbar puncture performed"),
        service="NEUROLOGY",
    ),
    7: ChapterPhrases(
        complaints=("vision loss", "eye pain", "blurry vision", "red eye"),
        symptoms=("blurred vision", "eye pain", "floaters", "photophobia", "a curtain over the vision"),
        findings=("injected conjunctiva", "afferent pupillary defect", "elevated intraocular pressure"),
        medications=("Latanoprost 0.005% ophth drops QHS", "Timolol 0.5% ophth drops BID"),
        tests=("ophthalmology consulted", "dilated fundus exam performed"),
        service="OPHTHALMOLOGY",
    ),
    8: ChapterPhrases(
        complaints=("vertigo", "hearing loss", "ear pain", "dizziness"),
        symptoms=("spinning vertigo", "ringing in the ears", "decreased hearing", "ear drainage", "nausea with head movement"),
        findings=("nystagmus", "tympanic membrane bulging", "positive Dix-Hallpike"),
        medications=("Meclizine 25 mg PO TID PRN dizziness", "Ofloxacin otic drops BID"),
        tests=("audiogram abnormal", "ENT consulted"),
        service="OTOLARYNGOLOGY",
    ),
    9: ChapterPhrases(
        complaints=("chest pain", "shortness of breath", "palpitations", "leg swelling", "syncope"),
        symptoms=(
            "substernal chest pressure", "dyspnea on exertion", "orthopnea", "bilateral leg swelling",
            "palpitations", "chest pain radiating to the left arm", "lightheadedness", "weight gain of 10 lbs",
        ),
        findings=(
            "irregularly irregular rhythm", "JVP elevated to the jaw", "2+ pitting edema to the knees",
            "systolic murmur at the apex", "bibasilar crackles", "S3 gallop",
        ),
        medications=(
            "Metoprolol succinate 50 mg PO DAILY", "Atorvastatin 80 mg PO QPM", "Aspirin 81 mg PO DAILY",
            "Furosemide 40 mg PO DAILY", "Apixaban 5 mg PO BID",
        ),
        tests=("troponin 0.45", "ECG with ST depressions", "BNP 2400", "echo with reduced ejection fraction"),
        service="CARDIOLOGY",
    ),
    10: ChapterPhrases(
        complaints=("shortness of breath", "cough", "hypoxia", "wheezing", "dyspnea"),
        symptoms=(
            "productive cough with green sputum", "wheezing", "worsening dyspnea", "pleuritic chest pain",
            "increased oxygen requirement", "fevers and cough",
        ),
        findings=(
            "diffuse expiratory wheezes", "rhonchi at the right base", "decreased breath sounds on the left",
            "accessory muscle use", "oxygen saturation 86% on room air",
        ),
        medications=(
            "Albuterol inhaler 2 puffs IH Q4H PRN", "Tiotropium 18 mcg IH DAILY", "Fluticasone-salmeterol IH BID",
            "Prednisone 40 mg PO DAILY",
        ),
        tests=("chest x-ray with a lobar consolidation", "ABG 7.31/58/62", "sputum culture sent"),
        service="MEDICINE",
    ),
    11: ChapterPhrases(
        complaints=("abdominal pain", "nausea and vomiting", "GI bleed", "jaundice", "diarrhea"),
        symptoms=(
            "epigastric pain", "right upper quadrant pain", "melena", "hematemesis", "bloody stools",
            "abdominal distension", "nausea and vomiting", "loss of appetite",
        ),
        findings=(
            "tender in the right upper quadrant", "positive Murphy sign", "distended abdomen with shifting dullness",
            "guarding and rebound", "scleral icterus", "guaiac positive stool",
        ),
        medications=("Pantoprazole 40 mg PO Q24H", "Lactulose 30 mL PO TID", "Rifaximin 550 mg PO BID"),
        tests=("lipase 1250", "elevated bilirubin and alkaline phosphatase", "CT abdomen with bowel wall thickening"),
        service="MEDICINE",
    ),
    12: ChapterPhrases(
        complaints=("rash", "skin infection", "leg redness", "wound"),
        symptoms=("spreading redness of the leg", "painful skin lesion", "itching", "blistering rash", "a draining wound"),
        findings=("warm erythematous skin with induration", "fluctuant abscess", "stage 3 pressure ulcer on the sacrum"),
        medications=("Cephalexin 500 mg PO Q6H", "Triamcinolone 0.1% cream BID", "Doxycycline 100 mg PO BID"),
        tests=("wound culture sent", "dermatology consulted"),
        service="MEDICINE",
    ),
    13: ChapterPhrases(
        complaints=("back pain", "joint pain", "knee pain", "hip pain", "joint swelling"),
        symptoms=(
            "low back pain radiating down the leg", "swollen painful knee", "morning stiffness",
            "limited range of motion", "neck pain", "numbness in the leg",
        ),
        findings=(
            "effusion of the right knee", "positive straight leg raise", "paraspinal tenderness",
            "crepitus with range of motion", "warm swollen joint",
        ),
        medications=("Meloxicam 15 mg PO DAILY", "Cyclobenzaprine 10 mg PO TID PRN spasm", "Methotrexate 15 mg PO weekly"),
        tests=("MRI spine with disc herniation", "joint aspiration performed", "ESR and CRP elevated"),
        service="ORTHOPAEDICS",
    ),
    14: ChapterPhrases(
        complaints=("flank pain", "decreased urine output", "dysuria", "hematuria", "abnormal labs"),
        symptoms=(
            "flank pain", "burning with urination", "urinary frequency", "blood in the urine",
            "decreased urine output", "urinary retention",
        ),
        findings=("costovertebral angle tenderness", "suprapubic tenderness", "foley draining cloudy urine"),
        medications=("Tamsulosin 0.4 mg PO QHS", "Sevelamer 800 mg PO TID", "Calcitriol 0.25 mcg PO DAILY"),
        tests=("creatinine 3.4 from baseline 1.1", "urinalysis with pyuria", "renal ultrasound with hydronephrosis"),
        service="MEDICINE",
    ),
    15: ChapterPhrases(
        complaints=("contractions", "vaginal bleeding in pregnancy", "elevated blood pressure in pregnancy", "labor"),
        symptoms=(
            "regular painful contractions", "leakage of fluid", "vaginal bleeding", "decreased fetal movement",
            "headache and visual changes in pregnancy",
        ),
        findings=("gravid uterus", "cervix 4 cm dilated", "fetal heart tracing category 1", "1+ proteinuria"),
        medications=("Prenatal vitamins 1 tab PO DAILY", "Labetalol 200 mg PO BID"),
        tests=("beta hCG positive", "obstetric ultrasound performed", "protein to creatinine ratio 0.6"),
        service="OBSTETRICS/GYNECOLOGY",
    ),
    16: ChapterPhrases(
        complaints=("perinatal complication", "complication of delivery"),
        symptoms=("a complicated delivery", "poor feeding of the newborn", "newborn jaundice"),
        findings=("neonatal team present at delivery", "newborn evaluated in the nursery"),
        medications=("Prenatal vitamins 1 tab PO DAILY",),
        tests=("neonatal bilirubin elevated",),
        service="OBSTETRICS/GYNECOLOGY",
    ),
    17: ChapterPhrases(
        complaints=("congenital anomaly", "known congenital condition"),
        symptoms=("a condition known since birth", "lifelong symptoms", "a known structural anomaly"),
        findings=("dysmorphic features", "congenital murmur", "structural anomaly on imaging"),
        medications=("Multivitamin 1 tab PO DAILY",),
        tests=("genetics consulted", "imaging showed a congenital anomaly"),
        service="MEDICINE",
    ),
    18: ChapterPhrases(
        complaints=("weakness", "dizziness", "fall", "syncope", "abdominal pain"),
        symptoms=(
            "generalized weakness", "nonspecific dizziness", "a fall at home", "transient loss of consciousness",
            "vague abdominal discomfort", "fatigue", "poor appetite",
        ),
        findings=("orthostatic vital signs positive", "no focal deficits", "benign abdominal exam"),
        medications=("Acetaminophen 650 mg PO Q6H PRN pain", "Docusate 100 mg PO BID"),
        tests=("workup unrevealing", "telemetry without events", "CT head negative"),
        service="MEDICINE",
    ),
    19: ChapterPhrases(
        complaints=("fall", "trauma", "overdose", "fracture", "motor vehicle collision"),
        symptoms=(
            "a mechanical fall with head strike", "hip pain after a fall", "deformity of the wrist",
            "an intentional ingestion of pills", "pain after a motor vehicle collision",
        ),
        findings=(
            "shortened and externally rotated leg", "laceration over the scalp", "tenderness over the ribs",
            "somnolent after ingestion", "swelling and ecchymosis of the ankle",
        ),
        medications=("Oxycodone 5 mg PO Q4H PRN pain", "Enoxaparin 40 mg SC DAILY"),
        tests=("x-ray with a displaced fracture", "acetaminophen level elevated", "trauma CT performed"),
        service="ORTHOPAEDICS",
    ),
    21: ChapterPhrases(
        complaints=("scheduled admission", "chemotherapy", "rehabilitation", "elective procedure"),
        symptoms=(
            "presents for a scheduled cycle of treatment", "admitted electively", "no acute complaints",
            "planned admission for therapy",
        ),
        findings=("well appearing, no acute distress", "port accessed without difficulty"),
        medications=("Ondansetron 8 mg PO Q8H PRN nausea", "Allopurinol 300 mg PO DAILY"),
        tests=("pre-treatment labs within range", "counts adequate for treatment"),
        service="MEDICINE",
    ),
    22: ChapterPhrases(
        complaints=("cough and fever", "shortness of breath", "positive viral test"),
        symptoms=("loss of taste and smell", "fever and dry cough", "myalgias", "a positive home antigen test"),
        findings=("bilateral crackles", "oxygen saturation 89% on room air"),
        medications=("Dexamethasone 6 mg PO DAILY",),
        tests=("viral PCR positive", "chest x-ray with bilateral infiltrates"),
        service="MEDICINE",
    ),
}

# Relative weight of each chapter among first-listed codes: roughly the shape of
# a general hospital's principal diagnoses (circulatory first, eye and ear rare).
FIRST_CODE_CHAPTER_WEIGHTS: dict[int, float] = {
    1: 8, 2: 9, 3: 2, 4: 5, 5: 7, 6: 5, 7: 0.5, 8: 0.5, 9: 20, 10: 8, 11: 10,
    12: 2, 13: 6, 14: 5, 15: 3, 16: 0.2, 17: 0.5, 18: 4, 19: 9, 21: 2, 22: 0.3,
}

# Frequent secondary diagnoses: they fill the past medical history and the `codes` list.
COMORBIDITIES: tuple[str, ...] = (
    "I10", "E785", "E119", "Z87891", "K219", "F329", "F419", "N179", "D649", "I4891", "E039",
    "Z7901", "G4733", "N189", "J449", "I2510", "E669", "G8929", "I5032", "E876", "E871", "D696",
    "Z66", "F17210", "F1020", "Z794",
)

# Frequent ICD-9-CM codes, for the admissions coded before the switch to ICD-10.
ICD9_CODES: tuple[str, ...] = (
    "4019", "4280", "42731", "41401", "5849", "25000", "2724", "51881", "5990", "486", "0389",
    "2859", "53081", "2449", "3051", "V5861", "496", "99592", "4241", "V4581", "2762", "78552",
)

GENERAL_APPEARANCE: tuple[str, ...] = (
    "NAD, resting comfortably", "uncomfortable appearing", "alert, oriented, in mild distress",
    "pleasant, lying in bed", "ill appearing",
)

FAMILY_HISTORY: tuple[str, ...] = (
    "Mother with hypertension; father died of a myocardial infarction at age ___.",
    "Noncontributory.",
    "Father with type 2 diabetes. Sister with breast cancer.",
    "No family history of early cardiac death or malignancy.",
    "Mother with dementia, father with colon cancer.",
    "Unknown, patient was adopted.",
)

SOCIAL_HISTORY: tuple[str, ...] = (
    "Lives with spouse. Former smoker, quit ___ years ago. Drinks one glass of wine weekly.",
    "Lives alone in an apartment. Denies tobacco, alcohol or illicit drug use.",
    "Works as a ___. Smokes one pack per day. Occasional alcohol.",
    "Retired, lives with family. Walks with a cane. No tobacco.",
)

ALLERGIES: tuple[str, ...] = (
    "No Known Allergies / Adverse Drug Reactions",
    "Penicillins",
    "Sulfa (Sulfonamide Antibiotics)",
    "Codeine / lisinopril",
    "Patient recorded as having No Known Allergies to Drugs",
)

PROCEDURES: tuple[str, ...] = (
    "None", "Paracentesis", "Cardiac catheterization", "Central line placement", "EGD",
    "Open reduction internal fixation", "Lumbar puncture", "Intubation and extubation",
)

DISPOSITIONS: tuple[str, ...] = ("Home", "Home With Service", "Extended Care", "Expired")

ADMISSION_EXAM_LABELS: tuple[str, ...] = ("ADMISSION PHYSICAL EXAM:", "ADMISSION EXAM:", "On admission:", "")

DISCHARGE_EXAM_LABELS: tuple[str, ...] = (
    "DISCHARGE PHYSICAL EXAM:", "DISCHARGE EXAM:", "Discharge PE:", "PHYSICAL EXAM ON DISCHARGE:",
    "ON DISCHARGE:", "=== DISCHARGE EXAM ===",
)
