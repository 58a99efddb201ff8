"""Prompt rendering, stop tokens, sampling rules and the generator config: what every backend shares."""

from __future__ import annotations

import copy

import pytest

from deepicd.errors import ConfigError, UserError
from deepicd.config import to_schema
from deepicd.generate import GenerationRequest, GeneratorConfig, SamplingConfig, build_generator
from deepicd.generate import sampling as rules
from deepicd.generate.render import prompt_ids, prompt_text, server_prompt_text, stop_token_ids
from deepicd.prompts import task


def test_prompt_is_template_with_generation_prompt_then_prefill(tiny_tokenizer):
    request = GenerationRequest("a", task.messages("CHIEF COMPLAINT: chest pain"))
    text = prompt_text(tiny_tokenizer, request)
    assert text == task.render(tiny_tokenizer, "CHIEF COMPLAINT: chest pain")
    assert text.endswith("<|im_start|>assistant\n<think>")
    assert prompt_text(tiny_tokenizer, GenerationRequest("b", request.messages, prefill="")).endswith("assistant\n")
    # The tags are single ordinary tokens in the tiny model, so the prompt ends on exactly the prefill token.
    assert prompt_ids(tiny_tokenizer, request)[-1] == tiny_tokenizer.convert_tokens_to_ids("<think>")


@pytest.fixture()
def bos_tokenizer(tiny_tokenizer):
    """The tiny tokenizer made to behave like Llama 3.1's: BOS written by the template and added on encode."""
    from tokenizers.processors import TemplateProcessing

    tokenizer = copy.deepcopy(tiny_tokenizer)
    bos = "<|endoftext|>"  # a special token the template does not otherwise write stands in for <|begin_of_text|>
    bos_id = tokenizer.convert_tokens_to_ids(bos)
    tokenizer.bos_token = bos
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, bos_id)])
    tokenizer.chat_template = "{{ bos_token }}" + tokenizer.chat_template
    assert tokenizer("a")["input_ids"][0] == bos_id  # the encode-time BOS really is there
    return tokenizer


def test_no_double_bos_locally_or_on_a_server(bos_tokenizer):
    request = GenerationRequest("a", task.messages("note"))
    bos_id = bos_tokenizer.bos_token_id
    ids = prompt_ids(bos_tokenizer, request)
    assert ids[0] == bos_id and ids[1] != bos_id
    text = server_prompt_text(bos_tokenizer, request)
    assert not text.startswith(bos_tokenizer.bos_token)
    # What a server gets after tokenizing our text with its defaults is exactly the local prompt.
    assert bos_tokenizer(text)["input_ids"] == ids


def test_server_text_is_untouched_without_bos(tiny_tokenizer):
    request = GenerationRequest("a", task.messages("note"))
    assert server_prompt_text(tiny_tokenizer, request) == prompt_text(tiny_tokenizer, request)


def test_stop_ids_cover_turn_end_and_configured_eos(tiny_tokenizer):
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    end_of_text = tiny_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert stop_token_ids(tiny_tokenizer) == sorted({im_end, end_of_text})
    assert stop_token_ids(tiny_tokenizer, 7) == sorted({7, im_end, end_of_text})
    assert stop_token_ids(tiny_tokenizer, [7, 9]) == sorted({7, 9, im_end, end_of_text})
    # Answer tags are ordinary tokens and must never stop generation.
    assert tiny_tokenizer.convert_tokens_to_ids("</diagnosis>") not in stop_token_ids(tiny_tokenizer)


@pytest.mark.parametrize(
    ("change", "key"),
    [({"n": 0}, "'n'"), ({"max_new_tokens": 0}, "'max_new_tokens'"), ({"temperature": -0.1}, "'temperature'"),
     ({"top_p": 0.0}, "'top_p'"), ({"top_p": 1.5}, "'top_p'")],
)
def test_sampling_validation_names_the_setting(change, key):
    with pytest.raises(UserError, match=key):
        SamplingConfig(**change)


def test_greedy_draws_once_and_widens_to_n():
    assert rules.draws(SamplingConfig(temperature=0, n=4)) == 1
    assert rules.draws(SamplingConfig(temperature=0.9, n=4)) == 4
    assert rules.widen(["x"], [3], 4) == (["x"] * 4, [3] * 4)
    assert rules.widen(["x", "y"], [3, 5], 2) == (["x", "y"], [3, 5])
    assert rules.widen(["x"], [], 2) == (["x", "x"], [])


@pytest.mark.parametrize(
    ("change", "key"),
    [({"backend": "tgi"}, "backend"), ({"api": "responses"}, "api"), ({"server": "sglang"}, "server"),
     ({"model": " "}, "model"), ({"batch_size": 0}, "batch_size"), ({"concurrency": 0}, "concurrency"),
     ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"), ({"max_model_len": 0}, "max_model_len"),
     ({"continuous_batching": "yes"}, "continuous_batching"), ({"dtype": "float16"}, "dtype")],
)
def test_config_validation_names_the_key(change, key):
    """A bad value is refused when the config is built; an empty model, when a generator is built from it."""
    with pytest.raises(UserError, match=key):
        build_generator(GeneratorConfig(**{"model": "m", **change}))


def test_config_composes_from_yaml_data_through_the_schema():
    data = {"backend": "vllm", "model": "/models/teacher", "max_model_len": 8192, "allowed_hosts": ["gpu-node-1"]}
    config = to_schema(GeneratorConfig, data, source="generator")
    assert config == GeneratorConfig(**data)
    with pytest.raises(ConfigError, match="batch_sizes"):
        to_schema(GeneratorConfig, {"batch_sizes": 4}, source="generator")
    with pytest.raises(ConfigError, match="max_model_len"):
        to_schema(GeneratorConfig, {"max_model_len": "long"}, source="generator")
