"""Per-GPU memory plans for a vLLM rollout engine and for FSDP training, in GiB.

Why: a run that does not fit is cheaper to refuse at start-up, with the
numbers and a fix, than to find out from an out-of-memory error after the
weights were loaded and the queue time was spent. These are estimates from the
model's shape, deliberately on the high side; they are not measurements.

Units. GPU sizes are given in GB (10^9 bytes), the way vendors advertise them
(H100 80 GB, H200 141 GB, B200 180 GB), and converted to GiB (2^30 bytes) for
the plan: 80 GB is 74.5 GiB here. The cards themselves report a little more
(an H100 "80 GB" holds about 79.6 GiB), so a typed size is conservative by
~7 %; `detect_gpu_memory_gb` reads the real size from the driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from deepicd.errors import UserError
from deepicd.plan.shapes import ModelShape

GIB = 1024**3
GB = 10**9

# vLLM: activation peak of its profiling run plus CUDA graphs, inside the utilization budget.
ROLLOUT_OVERHEAD_GIB = 2.0
# vLLM hands out KV cache in blocks of this many tokens.
KV_BLOCK_TOKENS = 16
# Training: CUDA context, NCCL buffers and allocator fragmentation, none of which torch counts as tensors.
TRAINING_OVERHEAD_GIB = 3.0
# Bytes per logit element: bf16 logits, the fp32 copy the loss upcasts to, and the fp32 log-probabilities
# cross-entropy keeps for backward (transformers' loss upcasts the whole [tokens, vocab] block).
LOGIT_EXTRA_BYTES = 4 + 4


def gb_to_gib(gb: float) -> float:
    """Vendor GB (10^9 bytes) as GiB."""
    return gb * GB / GIB


def _gib(nbytes: float) -> float:
    return nbytes / GIB


# -- rollout ---------------------------------------------------------------------
@dataclass(frozen=True)
class RolloutMemory:
    """What one GPU of a vLLM engine must hold, against the share of memory vLLM may use."""

    weights_gib: float
    kv_cache_gib: float  # the floor: one group of sequences at full length
    overhead_gib: float
    budget_gib: float  # gpu_memory_utilization x the GPU's memory
    tensor_parallel_size: int
    gpu_memory_gb: float
    gpu_memory_utilization: float

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.kv_cache_gib + self.overhead_gib

    @property
    def kv_room_gib(self) -> float:
        """KV cache vLLM will find after the weights and overhead (negative: it cannot start)."""
        return self.budget_gib - self.weights_gib - self.overhead_gib

    @property
    def min_gpu_memory_gb(self) -> float:
        """The smallest GPU (GB) on which this plan fits at the same utilization."""
        return self.total_gib * GIB / GB / self.gpu_memory_utilization

    def fits(self) -> bool:
        return self.total_gib <= self.budget_gib

    def explain(self) -> str:
        verdict = "fits" if self.fits() else f"does not fit (needs GPUs of >= {self.min_gpu_memory_gb:.0f} GB at this utilization)"
        return (
            f"rollout at tensor parallel {self.tensor_parallel_size}: weights {self.weights_gib:.1f} + KV cache "
            f"{self.kv_cache_gib:.1f} + overhead {self.overhead_gib:.1f} = {self.total_gib:.1f} GiB per GPU, budget "
            f"{self.gpu_memory_utilization:g} x {self.gpu_memory_gb:g} GB = {self.budget_gib:.1f} GiB: {verdict}"
        )


def kv_heads_per_gpu(shape: ModelShape, tensor_parallel_size: int) -> float:
    """Key/value heads each GPU stores: a share of them, or one replicated head when there are fewer than GPUs."""
    return max(1.0, shape.num_key_value_heads / tensor_parallel_size)


def check_tensor_parallel(shape: ModelShape, tensor_parallel_size: int) -> None:
    """vLLM splits query heads evenly and kv heads evenly or by replication; other sizes fail inside it."""
    tp, kv = tensor_parallel_size, shape.num_key_value_heads
    if tp < 1 or shape.num_attention_heads % tp or (kv % tp and tp % kv):
        raise UserError(
            f"tensor parallel size {tp} does not split {shape.name} ({shape.num_attention_heads} attention heads, "
            f"{kv} key-value heads); use a divisor of both, e.g. {_tp_divisors(shape)}"
        )


def _tp_divisors(shape: ModelShape) -> str:
    ok = [tp for tp in (1, 2, 4, 8, 16) if not shape.num_attention_heads % tp
          and not (shape.num_key_value_heads % tp and tp % shape.num_key_value_heads)]
    return ", ".join(map(str, ok))


def rollout_memory(
    shape: ModelShape,
    *,
    tensor_parallel_size: int,
    gpu_memory_gb: float,
    gpu_memory_utilization: float,
    group_sequences: int,
    sequence_length: int,
    dtype_bytes: int = 2,
) -> RolloutMemory:
    """Per-GPU need of a vLLM 0.24 engine against its budget.

    vLLM reserves `gpu_memory_utilization x total memory` and fits the weights,
    its activation/CUDA-graph peak (`ROLLOUT_OVERHEAD_GIB`) and the KV cache
    inside it. The weights are split over the tensor-parallel GPUs except the
    k/v projections when there are fewer kv heads than GPUs (vLLM replicates
    them). The KV floor holds one group of `group_sequences` sequences of
    `sequence_length` (prompt + response) tokens, rounded up to whole blocks:
    less than that and GRPO's group cannot be generated in one pass.
    """
    check_tensor_parallel(shape, tensor_parallel_size)
    if not 0 < gpu_memory_utilization <= 1:
        raise UserError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    tp = tensor_parallel_size
    heads = kv_heads_per_gpu(shape, tp)
    kv_projections = shape.num_hidden_layers * shape.kv_projection_parameters
    per_gpu_parameters = (shape.num_parameters - kv_projections) / tp + kv_projections * heads / shape.num_key_value_heads
    tokens = group_sequences * math.ceil(sequence_length / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS
    kv_per_token = 2 * shape.num_hidden_layers * heads * shape.head_dim * dtype_bytes
    return RolloutMemory(
        weights_gib=_gib(per_gpu_parameters * dtype_bytes),
        kv_cache_gib=_gib(tokens * kv_per_token),
        overhead_gib=ROLLOUT_OVERHEAD_GIB,
        budget_gib=gpu_memory_utilization * gb_to_gib(gpu_memory_gb),
        tensor_parallel_size=tp,
        gpu_memory_gb=gpu_memory_gb,
        gpu_memory_utilization=gpu_memory_utilization,
    )


def min_tensor_parallel_size(
    shape: ModelShape,
    *,
    gpu_memory_gb: float,
    gpu_memory_utilization: float,
    group_sequences: int,
    sequence_length: int,
    dtype_bytes: int = 2,
    candidates: Sequence[int] = (1, 2, 4, 8),
) -> int | None:
    """The smallest tensor-parallel size among `candidates` whose rollout fits; None if none does."""
    for tp in sorted(candidates):
        try:
            plan = rollout_memory(
                shape, tensor_parallel_size=tp, gpu_memory_gb=gpu_memory_gb, gpu_memory_utilization=gpu_memory_utilization,
                group_sequences=group_sequences, sequence_length=sequence_length, dtype_bytes=dtype_bytes,
            )
        except UserError:
            continue  # a size vLLM cannot use for this model
        if plan.fits():
            return tp
    return None


# -- training --------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingMemory:
    """What one GPU of an FSDP (full shard) training job holds at its peak, by component."""

    parameters_gib: float
    gradients_gib: float
    optimizer_gib: float
    gathered_gib: float  # unsharded bf16 units (and their gradients) during forward/backward
    activations_gib: float  # checkpoints and the layer being recomputed
    logits_gib: float
    overhead_gib: float
    world_size: int
    micro_batch_size: int
    sequence_length: int

    @property
    def total_gib(self) -> float:
        return (self.parameters_gib + self.gradients_gib + self.optimizer_gib + self.gathered_gib
                + self.activations_gib + self.logits_gib + self.overhead_gib)

    def fits(self, gpu_memory_gb: float) -> bool:
        return self.total_gib <= gb_to_gib(gpu_memory_gb)

    def explain(self, gpu_memory_gb: float | None = None) -> str:
        parts = (
            f"parameters {self.parameters_gib:.1f} + gradients {self.gradients_gib:.1f} + optimizer "
            f"{self.optimizer_gib:.1f} + gathered {self.gathered_gib:.1f} + activations {self.activations_gib:.1f} + "
            f"logits {self.logits_gib:.1f} + overhead {self.overhead_gib:.1f}"
        )
        line = (
            f"training on {self.world_size} GPU(s), micro-batch {self.micro_batch_size} x {self.sequence_length} "
            f"tokens: {parts} = {self.total_gib:.1f} GiB per GPU"
        )
        if gpu_memory_gb:
            verdict = "fits" if self.fits(gpu_memory_gb) else "does not fit"
            line += f", a {gpu_memory_gb:g} GB GPU has {gb_to_gib(gpu_memory_gb):.1f} GiB: {verdict}"
        return line


def layer_activation_elements(shape: ModelShape) -> int:
    """Elements per token one decoder layer keeps for backward, plus the MLP's transient gradients.

    Saved: the inputs of both RMSNorms in fp32 and their bf16 outputs (~6h),
    q/k/v after RoPE, keys and values repeated for grouped-query attention,
    the attention output and the o_proj input (~6h + 4kv), and gate, up,
    silu(gate) and their product in the MLP (4i). Backward through the MLP
    briefly adds about three more intermediate-sized gradients (3i).
    """
    h, i = shape.hidden_size, shape.intermediate_size
    return 12 * h + 4 * shape.kv_dim + 7 * i


def fsdp_training_memory(
    shape: ModelShape,
    *,
    world_size: int,
    micro_batch_size: int,
    sequence_length: int,
    gradient_checkpointing: bool,
    param_offload: bool,
    optimizer_offload: bool,
    param_bytes: int = 4,
    grad_bytes: int = 4,
    optimizer_bytes: int = 8,
    compute_dtype_bytes: int = 2,
    with_gradients: bool = True,
) -> TrainingMemory:
    """Peak per-GPU memory of FSDP full-shard training (or a frozen reference model: with_gradients=False).

    - Sharded state: parameters (`param_bytes`, fp32 masters by default),
      gradients and AdamW's two moments (`optimizer_bytes`) divided by
      `world_size`; zero on the GPU when offloaded (FSDP offloads gradients
      with the parameters).
    - Gathered: FSDP unshards one unit at a time in the compute dtype. Units
      are the decoder layers plus the root (embeddings, output head, final
      norm), which stays gathered from the start of forward to the end of
      backward. Counted: the root, the current and the prefetched layer, and
      with gradients their unsharded gradients before the reduce-scatter.
    - Activations for `tokens = micro_batch_size x sequence_length` (every
      row padded to the full length: the worst case): with checkpointing,
      each layer's input (layers x tokens x hidden) plus one layer recomputed
      (`layer_activation_elements`); without, every layer's activations;
      without gradients, only the layer being computed. All in the compute dtype.
    - Logits: tokens x vocab x (compute bytes + 8): the bf16 logits, the fp32
      copy the loss makes and the fp32 log-probabilities kept for backward.
      Usually the largest activation term for 128k-152k vocabularies.
    - `TRAINING_OVERHEAD_GIB` for the CUDA context, NCCL and fragmentation.

    Everything is summed although the logits peak and the recompute peak
    happen at different moments, so the figure errs on the high side.
    """
    if world_size < 1 or micro_batch_size < 1 or sequence_length < 1:
        raise UserError("world_size, micro_batch_size and sequence_length must be at least 1")
    n = shape.num_parameters
    cb = compute_dtype_bytes
    parameters = 0 if param_offload else n * param_bytes / world_size
    gradients = 0 if (param_offload or not with_gradients) else n * grad_bytes / world_size
    optimizer = 0 if (optimizer_offload or not with_gradients) else n * optimizer_bytes / world_size

    root = shape.embedding_parameters + shape.hidden_size
    gathered = (root + 2 * shape.layer_parameters) * cb
    if with_gradients:
        gathered += (root + shape.layer_parameters) * cb

    tokens = micro_batch_size * sequence_length
    layer = tokens * layer_activation_elements(shape) * cb
    if not with_gradients:
        activations = layer  # no graph is kept: only the layer being computed is alive
    elif gradient_checkpointing:
        activations = shape.num_hidden_layers * tokens * shape.hidden_size * cb + layer
    else:
        activations = shape.num_hidden_layers * layer
    logits = tokens * shape.vocab_size * (cb + LOGIT_EXTRA_BYTES)

    return TrainingMemory(
        parameters_gib=_gib(parameters),
        gradients_gib=_gib(gradients),
        optimizer_gib=_gib(optimizer),
        gathered_gib=_gib(gathered),
        activations_gib=_gib(activations),
        logits_gib=_gib(logits),
        overhead_gib=TRAINING_OVERHEAD_GIB,
        world_size=world_size,
        micro_batch_size=micro_batch_size,
        sequence_length=sequence_length,
    )


# -- the machine -----------------------------------------------------------------
def detect_gpu_memory_gb() -> float | None:
    """Total memory of the current CUDA device in GB (10^9 bytes); None without a GPU."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / GB
    except Exception:  # a broken driver is the same as no GPU for planning purposes
        return None


def refusal_message(what: str, explanation: str, fixes: Sequence[str]) -> str:
    """One paragraph for a refused run: what, the plan's numbers, and the changes that would fit."""
    if fixes:
        remedy = "Fix: " + "; or ".join(fixes) + "."
    else:
        remedy = "No single setting change fits: use GPUs with more memory or a shorter sequence length."
    return f"{what} does not fit in GPU memory: {explanation}. {remedy}"
