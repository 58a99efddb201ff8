"""The vLLM backend's plain-Python parts; the engine itself needs a GPU and `deepicd[gpu]`."""

from __future__ import annotations

import importlib.util

import pytest

from deepicd.errors import UserError
from deepicd.generate import GeneratorConfig, SamplingConfig, build_generator
from deepicd.generate.render import prompt_ids
from deepicd.generate.vllm_backend import engine_kwargs, gpu_groups, sampling_params_kwargs

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_sampling_params_follow_the_shared_settings():
    sampling = SamplingConfig(temperature=0.9, top_p=0.95, max_new_tokens=1024, n=4, seed=42,
                              top_k=20, min_p=0.05, repetition_penalty=1.05)
    params = sampling_params_kwargs(sampling, [2, 0])
    assert params == {"n": 4, "temperature": 0.9, "top_p": 0.95, "top_k": 20, "min_p": 0.05,
                      "repetition_penalty": 1.05, "max_tokens": 1024, "seed": 42,
                      "stop_token_ids": [2, 0], "skip_special_tokens": True}


def test_filters_left_off_are_stated_as_off():
    # Unstated, vLLM would take them from the model's generation_config.json.
    params = sampling_params_kwargs(SamplingConfig(), [2])
    assert (params["top_k"], params["min_p"], params["repetition_penalty"]) == (-1, 0.0, 1.0)
    assert sampling_params_kwargs(SamplingConfig(top_k=-1), [2])["top_k"] == -1


def test_greedy_decodes_once():
    sampling = SamplingConfig(temperature=0, top_p=0.5, top_k=20, min_p=0.1, repetition_penalty=1.1, n=4)
    params = sampling_params_kwargs(sampling, [2])
    assert params["n"] == 1 and params["temperature"] == 0.0 and params["top_p"] == 1.0
    assert params["top_k"] == -1 and params["min_p"] == 0.0
    assert params["repetition_penalty"] == 1.1  # it changes which token is most likely, so greedy keeps it


def test_engine_arguments():
    config = GeneratorConfig(backend="vllm", model="/m/teacher", tensor_parallel_size=2, gpu_memory_utilization=0.4)
    assert engine_kwargs(config) == {"model": "/m/teacher", "tokenizer": "/m/teacher", "tensor_parallel_size": 2,
                                     "gpu_memory_utilization": 0.4, "dtype": "auto", "trust_remote_code": False}
    config.max_model_len, config.tokenizer_path = 8192, "/m/tokenizer"
    assert engine_kwargs(config)["max_model_len"] == 8192
    assert engine_kwargs(config)["tokenizer"] == "/m/tokenizer"


def test_replicas_get_disjoint_gpu_groups():
    assert gpu_groups(["0", "1", "2", "3"], tensor_parallel_size=2, data_parallel_size=2) == ["0,1", "2,3"]
    assert gpu_groups(["4", "6", "7"], tensor_parallel_size=1, data_parallel_size=3) == ["4", "6", "7"]
    assert gpu_groups(["0", "1", "2", "3"], tensor_parallel_size=1, data_parallel_size=2) == ["0", "1"]
    with pytest.raises(UserError, match="needs 4 GPUs, but 2 are visible"):
        gpu_groups(["0", "1"], tensor_parallel_size=2, data_parallel_size=2)


def test_prompts_go_to_the_engine_as_token_ids_without_extra_bos(tiny_tokenizer, task_requests):
    # The engine receives exactly these ids; they decode back to the rendered prompt, prefill last.
    ids = prompt_ids(tiny_tokenizer, task_requests[0])
    text = tiny_tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n<think>")


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_missing_vllm_is_a_clear_user_error(tiny_model):
    with pytest.raises(UserError, match=r"deepicd\[gpu\]"):
        build_generator(GeneratorConfig(backend="vllm", model=str(tiny_model)))
