"""Training stages, each reading files and writing a model folder plus a manifest.

GRPO runs on VERL (GPU nodes) or TRL (one device) from one typed config and the
shared reward presets; SFT runs on TRL.
"""
