"""deepicd: reasoning LLMs that predict the first ICD-10-CM discharge diagnosis from MIMIC-IV admission notes."""

__version__ = "0.1.0"
