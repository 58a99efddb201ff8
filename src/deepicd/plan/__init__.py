"""GPU memory planning from a model's shape: will this run fit, and if not, what would.

Pure arithmetic, no GPU needed: `shapes` reads a model's `config.json` (local,
cached or bundled) into a `ModelShape`; `memory` turns a shape and a run's
settings into per-GPU GiB for a vLLM rollout engine or FSDP training. Stages
call it before loading anything, to refuse a run that cannot fit with the
numbers and a concrete fix.
"""

from deepicd.plan.memory import (
    GB,
    GIB,
    ROLLOUT_OVERHEAD_GIB,
    TRAINING_OVERHEAD_GIB,
    RolloutMemory,
    TrainingMemory,
    detect_gpu_memory_gb,
    fsdp_training_memory,
    gb_to_gib,
    min_tensor_parallel_size,
    refusal_message,
    rollout_memory,
)
from deepicd.plan.shapes import ModelShape, bundled_shapes, from_config, model_shape

__all__ = [
    "GB",
    "GIB",
    "ROLLOUT_OVERHEAD_GIB",
    "TRAINING_OVERHEAD_GIB",
    "ModelShape",
    "RolloutMemory",
    "TrainingMemory",
    "bundled_shapes",
    "detect_gpu_memory_gb",
    "from_config",
    "fsdp_training_memory",
    "gb_to_gib",
    "min_tensor_parallel_size",
    "model_shape",
    "refusal_message",
    "rollout_memory",
]
