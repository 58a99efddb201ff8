"""Model shapes: parameter counts match the published models and transformers; lookup order and errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from deepicd.errors import UserError
from deepicd.plan import GIB, bundled_shapes, from_config, model_shape
from deepicd.plan.shapes import SHAPES_DIR

PAPER_MODELS = {  # published parameter counts (hub safetensors)
    "Qwen/Qwen2.5-32B-Instruct": 32.76e9,
    "Qwen/Qwen2.5-7B-Instruct": 7.62e9,
    "meta-llama/Llama-3.1-8B-Instruct": 8.03e9,
}


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache with nothing in it, so bundled shapes are what the lookup finds."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_the_paper_models_are_bundled():
    assert set(PAPER_MODELS) <= set(bundled_shapes())


@pytest.mark.parametrize("model", sorted(PAPER_MODELS))
def test_parameter_counts_match_the_published_ones(model, empty_hub_cache):
    assert model_shape(model).num_parameters == pytest.approx(PAPER_MODELS[model], rel=0.005)


@pytest.mark.parametrize("model", sorted(PAPER_MODELS))
def test_parameter_counts_equal_transformers_on_the_meta_device(model, empty_hub_cache):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    # Two layers instead of all of them: every layer is alike, and building 64 takes seconds even on `meta`.
    fields = json.loads((SHAPES_DIR / (model.replace("/", "--") + ".json")).read_text())
    fields = {k: v for k, v in fields.items() if not k.startswith("_") and k not in ("architectures", "torch_dtype")}
    config = AutoConfig.for_model(fields.pop("model_type"), **{**fields, "num_hidden_layers": 2})
    with torch.device("meta"):
        built = AutoModelForCausalLM.from_config(config)
    shape = dataclasses.replace(model_shape(model), num_hidden_layers=2)
    assert shape.num_parameters == sum(p.numel() for p in built.parameters())


def test_a_local_folder_is_read_exactly(tiny_model):
    from transformers import AutoModelForCausalLM

    shape = model_shape(tiny_model)
    built = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert shape.num_parameters == sum(p.numel() for p in built.parameters())
    assert shape.name == str(tiny_model) and shape.qkv_bias  # Qwen2 architecture: q/k/v biases
    assert model_shape(tiny_model / "config.json").num_parameters == shape.num_parameters


def test_32b_weights_in_bf16_are_about_61_gib(empty_hub_cache):
    shape = model_shape("Qwen/Qwen2.5-32B-Instruct")
    assert shape.weight_bytes(2) / GIB == pytest.approx(61.0, abs=0.5)


def test_kv_cache_per_token_counts_keys_and_values_of_every_layer(empty_hub_cache):
    # 2 (k and v) x 64 layers x 8 kv heads x 128 head dim x 2 bytes
    assert model_shape("Qwen/Qwen2.5-32B-Instruct").kv_bytes_per_token(2) == 2 * 64 * 8 * 128 * 2 == 256 * 1024
    assert model_shape("meta-llama/Llama-3.1-8B-Instruct").kv_bytes_per_token(1) == 2 * 32 * 8 * 128


def test_the_hugging_face_cache_wins_over_the_bundled_shape(empty_hub_cache):
    repo = empty_hub_cache / "models--Qwen--Qwen2.5-7B-Instruct"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    config = {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000}
    (snapshot / "config.json").write_text(json.dumps(config))
    assert model_shape("Qwen/Qwen2.5-7B-Instruct").hidden_size == 64


def test_bundled_names_match_without_regard_to_case(empty_hub_cache):
    assert model_shape("qwen/qwen2.5-7b-instruct").num_hidden_layers == 28


def test_an_unknown_model_names_every_place_tried(empty_hub_cache):
    with pytest.raises(UserError) as error:
        model_shape("someone/unknown-model")
    message = str(error.value)
    assert "someone/unknown-model" in message and "local folder" in message and "Hugging Face cache" in message
    assert "Qwen/Qwen2.5-32B-Instruct" in message  # the bundled shapes are listed


def test_a_folder_without_config_is_named(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        model_shape(tmp_path)


def test_defaults_and_refusals_of_config_parsing():
    minimal = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 8,
               "vocab_size": 100, "model_type": "llama"}
    shape = from_config(minimal, "m")
    assert (shape.num_key_value_heads, shape.head_dim, shape.tie_word_embeddings, shape.qkv_bias) == (8, 32, False, False)
    tied = from_config({**minimal, "tie_word_embeddings": True}, "m")
    assert shape.num_parameters - tied.num_parameters == 100 * 256
    biased = from_config({**minimal, "attention_bias": True}, "m")
    assert biased.num_parameters - shape.num_parameters == 2 * (3 * 256 + 256)  # q, k, v and o biases, two layers
    nested = from_config({"model_type": "wrapper", "text_config": minimal}, "m")
    assert nested.num_parameters == shape.num_parameters
    with pytest.raises(UserError, match="mixture-of-experts"):
        from_config({**minimal, "num_experts": 8}, "m")
    with pytest.raises(UserError, match="lacks 'vocab_size'"):
        from_config({k: v for k, v in minimal.items() if k != "vocab_size"}, "m")
