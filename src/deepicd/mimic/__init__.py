"""MIMIC-IV for the task: table reading, admission-note sections, targets, splits, VERL rows, synthetic data.

Each module does one job and knows nothing of the command line; the
`deepicd.preprocess` stage and the `synth-mimic` command put them together.
"""
