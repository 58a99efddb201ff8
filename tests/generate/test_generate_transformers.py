"""The transformers backend on the tiny model: keys, n samples, seeds, padding and the decoding rule."""

from __future__ import annotations

import pytest
import torch

from deepicd.generate import GenerationRequest, GeneratorConfig, SamplingConfig, build_generator
from deepicd.generate.render import prompt_ids, prompt_text
from deepicd.generate.transformers_backend import TransformersGenerator

SAMPLE = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=12, n=2, seed=7)
GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=12, n=3, seed=7)


@pytest.fixture(scope="module")
def generator(tiny_model):
    config = GeneratorConfig(model=str(tiny_model), device="cpu", batch_size=2, progress=False)
    built = build_generator(config)
    assert isinstance(built, TransformersGenerator) and not built.continuous  # plain batches on a CPU
    yield built
    built.close()


def _by_key(results):
    results = list(results)
    assert len({r.key for r in results}) == len(results)
    return {r.key: r for r in results}


def test_n_samples_per_prompt_keyed_to_their_prompt(generator, task_requests):
    results = _by_key(generator.generate(task_requests, SAMPLE))
    assert set(results) == {r.key for r in task_requests}
    for request in task_requests:
        result = results[request.key]
        assert result.error is None
        assert len(result.completions) == 2 and len(result.completion_tokens) == 2
        assert all(1 <= count <= SAMPLE.max_new_tokens for count in result.completion_tokens)
        # Prompts have different lengths and are reordered internally: the count proves each result's origin.
        assert result.prompt_tokens == len(prompt_ids(generator.tokenizer, request))
    assert len({results[r.key].prompt_tokens for r in task_requests}) == 3


def test_same_seed_same_samples_other_seed_other_samples(generator, task_requests):
    first = _by_key(generator.generate(task_requests, SAMPLE))
    again = _by_key(generator.generate(task_requests, SAMPLE))
    other = _by_key(generator.generate(task_requests, SamplingConfig(**{**SAMPLE.__dict__, "seed": 8})))
    assert {k: r.completions for k, r in first.items()} == {k: r.completions for k, r in again.items()}
    assert {k: r.completions for k, r in first.items()} != {k: r.completions for k, r in other.items()}
    # The two samples of one prompt are distinct draws, not copies.
    assert any(len(set(r.completions)) == 2 for r in first.values())


def test_caller_random_state_is_left_alone(generator, task_requests):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    list(generator.generate(task_requests[:1], SAMPLE))
    assert torch.equal(torch.rand(3), expected)


def _reference_greedy(generator, request: GenerationRequest, max_new_tokens: int) -> str:
    """One prompt, no padding, straight `model.generate`: what the batched backend must reproduce."""
    tokenizer, model = generator.tokenizer, generator.model
    ids = tokenizer(prompt_text(tokenizer, request), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        output = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens,
            eos_token_id=generator.stop_ids, pad_token_id=generator.pad_id,
        )
    new = output[0, ids.shape[1]:].tolist()
    for position, token in enumerate(new):
        if token in generator.stop_ids:
            new = new[:position]
            break
    return tokenizer.decode(new, skip_special_tokens=True)


def test_left_padded_greedy_batch_matches_unpadded_single_prompts(untied_model, task_requests):
    config = GeneratorConfig(model=str(untied_model), device="cpu", batch_size=3, progress=False)
    generator = TransformersGenerator(config)
    results = _by_key(generator.generate(task_requests, GREEDY))
    for request in task_requests:
        completions = results[request.key].completions
        assert completions == [completions[0]] * 3  # greedy: decoded once, repeated n times
        assert completions[0] == _reference_greedy(generator, request, GREEDY.max_new_tokens)
    assert len({results[r.key].completions[0] for r in task_requests}) == 3


def test_decoding_stops_at_the_first_end_token_and_keeps_the_tags(generator):
    tokenizer = generator.tokenizer
    body = tokenizer("reasoning</think>\n<diagnosis>I214</diagnosis>", add_special_tokens=False)["input_ids"]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.pad_token_id
    text, count = generator.decode(body + [im_end, pad, pad])
    assert text == "reasoning</think>\n<diagnosis>I214</diagnosis>"
    assert count == len(body) + 1
    text, count = generator.decode(body)  # ran out of tokens: nothing cut, every token counted
    assert count == len(body) and text.endswith("</diagnosis>")


def test_empty_request_list_yields_nothing(generator):
    assert list(generator.generate([], SAMPLE)) == []


@pytest.mark.slow
def test_continuous_batching_groups_samples_and_matches_static_greedy(untied_model, task_requests):
    config = GeneratorConfig(model=str(untied_model), device="cpu", continuous_batching="on", progress=False)
    generator = TransformersGenerator(config)
    assert generator.continuous
    sampled = _by_key(generator.generate(task_requests, SAMPLE))
    assert set(sampled) == {r.key for r in task_requests}
    for request in task_requests:
        result = sampled[request.key]
        assert result.error is None and len(result.completions) == 2
        assert result.prompt_tokens == len(prompt_ids(generator.tokenizer, request))
    greedy = _by_key(generator.generate(task_requests, GREEDY))
    for request in task_requests:
        assert greedy[request.key].completions == [_reference_greedy(generator, request, GREEDY.max_new_tokens)] * 3


def test_sampling_filters_reach_the_generation_config_whatever_the_model_defaults(tiny_model):
    from deepicd.generate import GeneratorConfig, SamplingConfig
    from deepicd.generate.transformers_backend import TransformersGenerator
    from deepicd.models import load

    model, tokenizer = load(tiny_model, device="cpu")
    model.generation_config.top_k, model.generation_config.repetition_penalty = 20, 1.05  # Qwen2.5-Instruct's
    model.generation_config.min_p = 0.1
    generator = TransformersGenerator(GeneratorConfig(model=str(tiny_model), device="cpu", progress=False),
                                      model=model, tokenizer=tokenizer)
    chosen = generator.generation_config(SamplingConfig(top_k=5, min_p=0.02, repetition_penalty=1.1))
    off = generator.generation_config(SamplingConfig())
    greedy = generator.generation_config(SamplingConfig(temperature=0, repetition_penalty=1.2))
    assert (chosen.top_k, chosen.min_p, chosen.repetition_penalty) == (5, 0.02, 1.1)
    assert (off.top_k, off.min_p, off.repetition_penalty) == (0, 0.0, 1.0)
    assert greedy.do_sample is False and greedy.repetition_penalty == 1.2
    prepared, _ = model._prepare_generation_config(off)
    assert (prepared.top_k, prepared.min_p, prepared.repetition_penalty) == (0, 0.0, 1.0)  # nothing inherited
