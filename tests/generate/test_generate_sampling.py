"""The shared sampling rules: validation of every setting, and the filters each backend must state."""

from __future__ import annotations

import pytest

from deepicd.errors import UserError
from deepicd.generate import SamplingConfig
from deepicd.generate import sampling as rules


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"top_k": -2}, "'top_k': must be a whole number of tokens, or 0 (or -1) for off, got -2"),
        ({"top_k": 2.5}, "'top_k'"),
        ({"min_p": -0.1}, "'min_p': must be in [0, 1], 0 for off, got -0.1"),
        ({"min_p": 1.5}, "'min_p'"),
        ({"repetition_penalty": 0.0}, "'repetition_penalty': must be positive, 1.0 for off, got 0.0"),
        ({"repetition_penalty": -1.0}, "'repetition_penalty'"),
        ({"top_p": 0.0}, "'top_p'"),
        ({"temperature": -1.0}, "'temperature'"),
    ],
)
def test_invalid_settings_are_named(changes, message):
    with pytest.raises(UserError) as caught:
        SamplingConfig(**changes)
    assert message in str(caught.value)


@pytest.mark.parametrize("changes", [{}, {"top_k": -1}, {"top_k": 0}, {"top_k": 20, "min_p": 1.0},
                                     {"repetition_penalty": 0.9}])
def test_sound_settings_pass(changes):
    assert rules.draws(SamplingConfig(**changes)) >= 1  # built without complaint


def test_the_defaults_switch_every_filter_off():
    assert rules.filters(SamplingConfig()) == {
        "temperature": 0.9, "top_p": 1.0, "top_k": None, "min_p": 0.0, "repetition_penalty": 1.0,
    }
    assert rules.filters(SamplingConfig(top_k=-1))["top_k"] is None


def test_greedy_keeps_only_the_repetition_penalty():
    greedy = SamplingConfig(temperature=0, top_p=0.5, top_k=20, min_p=0.1, repetition_penalty=1.05)
    assert rules.filters(greedy) == {
        "temperature": 0.0, "top_p": 1.0, "top_k": None, "min_p": 0.0, "repetition_penalty": 1.05,
    }


def test_transformers_settings_leave_nothing_to_the_model_defaults():
    # Every value transformers would otherwise inherit from the model's generation config is stated.
    settings = rules.transformers_settings(SamplingConfig(temperature=0.7, top_p=0.8, top_k=20, min_p=0.05,
                                                          repetition_penalty=1.05))
    assert settings == {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.05,
                        "repetition_penalty": 1.05, "typical_p": 1.0, "no_repeat_ngram_size": 0}
    off = rules.transformers_settings(SamplingConfig())
    assert (off["top_k"], off["min_p"], off["repetition_penalty"]) == (0, 0.0, 1.0)  # 0 is transformers' "off"


def test_transformers_settings_build_a_generation_config():
    from transformers import GenerationConfig

    for sampling in (SamplingConfig(top_k=20, min_p=0.05, repetition_penalty=1.05), SamplingConfig(temperature=0)):
        config = GenerationConfig(**rules.transformers_settings(sampling), max_new_tokens=4)
        config.validate(strict=True)
        assert config.repetition_penalty == sampling.repetition_penalty
