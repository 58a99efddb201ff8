"""Rewards for GRPO: pure functions of a completion and its gold code, configured in YAML.

`parse` finds think/diagnosis pairs in linear time, `components` holds the
registered reward terms, `scorer` combines them (and the LLM judge) as a preset
says, and `verl_entry` / `trl_entry` adapt the scorer to each training engine.
"""
