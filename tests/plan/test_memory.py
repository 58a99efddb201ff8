"""Memory plans: vLLM rollouts of the paper's 32B model, FSDP training arithmetic, refusals."""

from __future__ import annotations

import pytest

from deepicd.errors import UserError
from deepicd.plan import (
    GB,
    GIB,
    detect_gpu_memory_gb,
    fsdp_training_memory,
    gb_to_gib,
    min_tensor_parallel_size,
    model_shape,
    refusal_message,
    rollout_memory,
)

PAPER_ROLLOUT = {"gpu_memory_utilization": 0.4, "group_sequences": 8, "sequence_length": 2048 + 1024}


@pytest.fixture(scope="module")
def qwen32b():
    return model_shape("Qwen/Qwen2.5-32B-Instruct")


@pytest.fixture(scope="module")
def qwen7b():
    return model_shape("Qwen/Qwen2.5-7B-Instruct")


@pytest.fixture(scope="module")
def llama8b():
    return model_shape("meta-llama/Llama-3.1-8B-Instruct")


def rollout(shape, tp, gb, **changes):
    return rollout_memory(shape, tensor_parallel_size=tp, gpu_memory_gb=gb, **{**PAPER_ROLLOUT, **changes})


def train(shape, **changes):
    settings = dict(world_size=8, micro_batch_size=4, sequence_length=4096, gradient_checkpointing=True,
                    param_offload=False, optimizer_offload=False)
    return fsdp_training_memory(shape, **{**settings, **changes})


def test_advertised_gb_are_converted_to_gib():
    assert gb_to_gib(80) == pytest.approx(74.51, abs=0.01)
    assert gb_to_gib(141) == pytest.approx(131.32, abs=0.01)


def test_32b_at_tensor_parallel_1_and_utilization_04_needs_a_gpu_over_160_gb(qwen32b):
    for gb in (80, 141, 180):
        assert not rollout(qwen32b, 1, gb).fits()
    assert rollout(qwen32b, 1, 200).fits()
    # The weights alone need 61 GiB / 0.4 of a GPU: about 164 GB before any KV cache or overhead.
    weights_only = rollout(qwen32b, 1, 200)
    assert weights_only.weights_gib * GIB / GB / 0.4 == pytest.approx(163.8, abs=0.5)
    assert weights_only.min_gpu_memory_gb > 164


def test_the_smallest_tensor_parallel_size_for_32b_at_04(qwen32b):
    on = {"group_sequences": 8, "sequence_length": 3072, "gpu_memory_utilization": 0.4}
    assert min_tensor_parallel_size(qwen32b, gpu_memory_gb=80, **on) == 4
    assert min_tensor_parallel_size(qwen32b, gpu_memory_gb=141, **on) == 2
    assert min_tensor_parallel_size(qwen32b, gpu_memory_gb=24, **on) is None
    assert not rollout(qwen32b, 2, 80).fits() and rollout(qwen32b, 4, 80).fits()


def test_tensor_parallelism_divides_weights_and_kv_cache(qwen32b):
    one, four = rollout(qwen32b, 1, 80), rollout(qwen32b, 4, 80)
    assert four.weights_gib == pytest.approx(one.weights_gib / 4)
    assert four.kv_cache_gib == pytest.approx(one.kv_cache_gib / 4)
    # One group of 8 x 3072 tokens at 256 KiB per token: 6 GiB on one GPU.
    assert one.kv_cache_gib == pytest.approx(8 * 3072 * 256 * 1024 / GIB)
    assert four.kv_room_gib == pytest.approx(four.budget_gib - four.weights_gib - four.overhead_gib)


def test_kv_heads_are_replicated_when_fewer_than_gpus(llama8b):
    # 8 kv heads: TP 8 holds one per GPU, TP 16 cannot hold half a head and keeps one as well.
    shape = llama8b
    assert rollout(shape, 8, 80).kv_cache_gib == pytest.approx(rollout(shape, 16, 80).kv_cache_gib)
    assert rollout(shape, 16, 80).weights_gib > shape.weight_bytes(2) / GIB / 16  # k/v projections replicated


def test_a_tensor_parallel_size_vllm_cannot_use_is_refused(qwen7b):
    with pytest.raises(UserError, match="28 attention heads"):
        rollout(qwen7b, 8, 80)  # 28 heads do not split over 8 GPUs
    assert rollout(qwen7b, 4, 80).fits()
    with pytest.raises(UserError, match="gpu_memory_utilization"):
        rollout(qwen7b, 1, 80, gpu_memory_utilization=1.5)


def test_rollout_explain_is_one_line_with_the_numbers(qwen32b):
    text = rollout(qwen32b, 1, 80).explain()
    assert "\n" not in text and "61.0" in text and "29.8 GiB" in text and "does not fit" in text
    assert "fits" in rollout(qwen32b, 4, 80).explain()


def test_sharding_divides_parameters_gradients_and_optimizer(llama8b):
    one, eight = train(llama8b, world_size=1), train(llama8b, world_size=8)
    for part in ("parameters_gib", "gradients_gib", "optimizer_gib"):
        assert getattr(eight, part) == pytest.approx(getattr(one, part) / 8)
    assert one.parameters_gib == pytest.approx(llama8b.num_parameters * 4 / GIB)
    assert one.optimizer_gib == pytest.approx(2 * one.parameters_gib)
    assert eight.activations_gib == one.activations_gib and eight.gathered_gib == one.gathered_gib


def test_activations_and_logits_grow_with_the_micro_batch(llama8b):
    small, large = train(llama8b, micro_batch_size=1), train(llama8b, micro_batch_size=4)
    assert large.activations_gib == pytest.approx(4 * small.activations_gib)
    assert large.logits_gib == pytest.approx(4 * small.logits_gib)
    assert large.parameters_gib == small.parameters_gib
    # bf16 logits + fp32 copy + fp32 log-probabilities of 4 x 4096 tokens over 128,256 entries
    assert large.logits_gib == pytest.approx(4 * 4096 * 128256 * 10 / GIB)


def test_gradient_checkpointing_keeps_fewer_activations(llama8b):
    assert train(llama8b, gradient_checkpointing=True).activations_gib < train(llama8b, gradient_checkpointing=False).activations_gib / 10


def test_offload_takes_the_sharded_state_off_the_gpu(llama8b):
    resident = train(llama8b, world_size=1)
    params = train(llama8b, world_size=1, param_offload=True)
    both = train(llama8b, world_size=1, param_offload=True, optimizer_offload=True)
    assert params.parameters_gib == params.gradients_gib == 0 and params.optimizer_gib == resident.optimizer_gib
    assert both.optimizer_gib == 0 and both.total_gib < params.total_gib < resident.total_gib
    assert both.gathered_gib == resident.gathered_gib  # the working layers are still on the GPU


def test_a_reference_model_has_no_gradients_or_optimizer(llama8b):
    reference, actor = train(llama8b, with_gradients=False), train(llama8b)
    assert reference.gradients_gib == reference.optimizer_gib == 0
    assert reference.total_gib < actor.total_gib and reference.gathered_gib < actor.gathered_gib


def test_the_8b_paper_preset_fits_eight_80_gb_gpus_but_not_one(llama8b):
    eight, one = train(llama8b, world_size=8), train(llama8b, world_size=1)
    assert eight.fits(80) and not one.fits(80) and not one.fits(141)
    assert one.total_gib > 120  # 16 bytes per parameter of 8B alone
    text = one.explain(80)
    assert "\n" not in text and "74.5 GiB" in text and "does not fit" in text


def test_the_refusal_message_carries_numbers_and_fixes(llama8b):
    plan = train(llama8b, world_size=1)
    message = refusal_message("sft on 1 GPU", plan.explain(80), ["launch 4 processes", "per_device_batch_size=1"])
    assert message.startswith("sft on 1 GPU does not fit in GPU memory: ")
    assert f"{plan.total_gib:.1f} GiB" in message and "Fix: launch 4 processes; or per_device_batch_size=1." in message
    assert "more memory" in refusal_message("x", "y", [])


def test_no_gpu_means_no_detected_size():
    import torch

    if torch.cuda.is_available():
        assert detect_gpu_memory_gb() > 1
    else:
        assert detect_gpu_memory_gb() is None
