"""Distillation: oracle-prompted teacher traces, stored resumably, filtered into SFT data."""
