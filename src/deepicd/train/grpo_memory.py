"""Does a GRPO run fit its GPUs? The VERL and TRL memory plans, and the settings `verl.auto_fit` picks.

On a VERL node every GPU holds two roles at once. vLLM (the rollout) takes
`gpu_memory_utilization x memory` for its weights and KV cache, and at start-up
it needs that much *free*: the FSDP actor's resident state (parameters and
AdamW moments, unless offloaded) and the reference model's parameters are
already there. During the update vLLM sleeps (weights to CPU, cache freed) and
the actor peaks: state + gradients + gathered layers + activations + logits.
So a plan fits when

    rollout need                               <= utilization x memory
    actor state + reference + utilization x M  <= M   (vLLM can start)
    actor peak + reference                     <= M   (the update runs)

`auto_fit` keeps the preset's utilization and changes, in order, only what does
not change the training math: the tensor-parallel size of the rollout (smallest
that fits), then FSDP offload (optimizer, then parameters), then the per-GPU
micro-batch (halved; the mini-batch and hence every update stay the same).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from deepicd.errors import UserError
from deepicd.plan import memory
from deepicd.plan.memory import RolloutMemory, TrainingMemory, gb_to_gib
from deepicd.plan.shapes import ModelShape, model_shape
from deepicd.train.grpo_config import GRPORunConfig


@dataclass(frozen=True)
class VerlPlan:
    """Per-GPU memory of one VERL setting, and whether each phase fits."""

    gpu_memory_gb: float
    rollout: RolloutMemory
    actor: TrainingMemory
    reference: Optional[TrainingMemory]

    @property
    def memory_gib(self) -> float:
        return gb_to_gib(self.gpu_memory_gb)

    @property
    def reference_gib(self) -> float:
        return self.reference.parameters_gib if self.reference else 0.0

    @property
    def resident_gib(self) -> float:
        """What the actor and reference keep on the GPU while vLLM starts and generates."""
        return self.actor.parameters_gib + self.actor.optimizer_gib + self.reference_gib + self.actor.overhead_gib

    @property
    def update_gib(self) -> float:
        return self.actor.total_gib + self.reference_gib

    def problems(self) -> list[str]:
        """Each phase that does not fit, with its numbers; empty when the plan fits."""
        found = []
        if not self.rollout.fits():
            found.append(self.rollout.explain())
        if self.resident_gib + self.rollout.budget_gib > self.memory_gib:
            found.append(
                f"vLLM needs {self.rollout.budget_gib:.1f} GiB free at start-up but the actor keeps "
                f"{self.resident_gib:.1f} GiB resident (parameters {self.actor.parameters_gib:.1f}, optimizer "
                f"{self.actor.optimizer_gib:.1f}, reference {self.reference_gib:.1f}, context "
                f"{self.actor.overhead_gib:.1f}) of {self.memory_gib:.1f} GiB")
        if self.update_gib > self.memory_gib:
            found.append(f"the actor update peaks at {self.update_gib:.1f} GiB per GPU "
                         f"({self.actor.explain()}) of {self.memory_gib:.1f} GiB")
        return found

    def fits(self) -> bool:
        return not self.problems()

    def summary(self) -> str:
        """One line per-GPU: rollout against its budget, resident state, update peak, against the GPU."""
        return (f"per GPU of {self.gpu_memory_gb:g} GB ({self.memory_gib:.1f} GiB): rollout {self.rollout.total_gib:.1f} of "
                f"{self.rollout.budget_gib:.1f} GiB at tensor parallel {self.rollout.tensor_parallel_size}; actor resident "
                f"{self.resident_gib:.1f} GiB; update peak {self.update_gib:.1f} GiB")

    def table_row(self) -> dict[str, float]:
        return {"rollout_gib": round(self.rollout.total_gib, 1), "rollout_budget_gib": round(self.rollout.budget_gib, 1),
                "resident_gib": round(self.resident_gib, 1), "update_gib": round(self.update_gib, 1)}


def gpu_memory_gb(config: GRPORunConfig) -> tuple[Optional[float], str]:
    """The GPU size to plan for (GB) and where it came from; None when neither set nor detectable."""
    if config.verl.gpu_memory_gb > 0:
        return config.verl.gpu_memory_gb, "verl.gpu_memory_gb"
    detected = memory.detect_gpu_memory_gb()
    if detected:
        return detected, "detected on this machine"
    return None, ""


def verl_plan(config: GRPORunConfig, shape: ModelShape, gpu_gb: float) -> VerlPlan:
    """The per-GPU memory of `config` as it stands."""
    g, v = config.grpo, config.verl
    sequence = g.max_prompt_length + g.max_completion_length
    rollout = memory.rollout_memory(
        shape, tensor_parallel_size=v.tensor_parallel_size, gpu_memory_gb=gpu_gb,
        gpu_memory_utilization=v.gpu_memory_utilization, group_sequences=g.num_generations, sequence_length=sequence)
    world = v.nnodes * v.n_gpus_per_node
    actor = memory.fsdp_training_memory(
        shape, world_size=world, micro_batch_size=v.micro_batch_size_per_gpu, sequence_length=sequence,
        gradient_checkpointing=g.gradient_checkpointing, param_offload=v.param_offload,
        optimizer_offload=v.optimizer_offload)
    reference = None
    if g.kl_loss_coef > 0 or g.kl_in_reward:
        reference = memory.fsdp_training_memory(
            shape, world_size=world, micro_batch_size=v.micro_batch_size_per_gpu, sequence_length=sequence,
            gradient_checkpointing=g.gradient_checkpointing, param_offload=v.param_offload, optimizer_offload=True,
            param_bytes=2, with_gradients=False)
    return VerlPlan(gpu_memory_gb=gpu_gb, rollout=rollout, actor=actor, reference=reference)


def _tensor_parallel_options(config: GRPORunConfig, shape: ModelShape) -> list[int]:
    """Sizes vLLM can split this model into within one node, from the preset's upwards."""
    options = []
    for tp in range(config.verl.tensor_parallel_size, config.verl.n_gpus_per_node + 1):
        if config.verl.n_gpus_per_node % tp:
            continue
        try:
            memory.check_tensor_parallel(shape, tp)
        except UserError:
            continue
        options.append(tp)
    return options


def _micro_batches(start: int) -> list[int]:
    sizes = [start]
    while sizes[-1] % 2 == 0:
        sizes.append(sizes[-1] // 2)
    return sizes


def _candidates(config: GRPORunConfig, shape: ModelShape):
    """Settings in the order auto_fit prefers them: smallest TP, least offload, largest micro-batch."""
    v = config.verl
    offloads = [(v.param_offload, v.optimizer_offload), (v.param_offload, True), (True, True)]
    offloads = list(dict.fromkeys(offloads))
    for micro in _micro_batches(v.micro_batch_size_per_gpu):
        for param_offload, optimizer_offload in offloads:
            for tp in _tensor_parallel_options(config, shape):
                yield replace(config, verl=replace(v, tensor_parallel_size=tp, param_offload=param_offload,
                                                   optimizer_offload=optimizer_offload, micro_batch_size_per_gpu=micro))


@dataclass(frozen=True)
class FitResult:
    """The config to run, its plan, and what auto_fit changed (empty when the preset fits as written)."""

    config: GRPORunConfig
    plan: Optional[VerlPlan]
    changes: list[str]
    note: str  # why there is no plan, when there is none


FITTED_KEYS = ("tensor_parallel_size", "param_offload", "optimizer_offload", "micro_batch_size_per_gpu")


def _changes(before: GRPORunConfig, after: GRPORunConfig) -> list[str]:
    return [f"verl.{key}: {getattr(before.verl, key)} -> {getattr(after.verl, key)}"
            for key in FITTED_KEYS if getattr(before.verl, key) != getattr(after.verl, key)]


def fit(config: GRPORunConfig) -> FitResult:
    """Plan `config` on its GPUs; with `verl.auto_fit`, the first setting that fits; refuse what cannot fit.

    Without a known GPU size or model shape there is nothing to plan: the result
    says why, and the caller decides whether that is an error (preflight) or a
    note (dry run).
    """
    gpu_gb, _ = gpu_memory_gb(config)
    if gpu_gb is None:
        return FitResult(config, None, [], "GPU memory unknown (no GPU here): set verl.gpu_memory_gb=80 (or the "
                         "size of the run's GPUs in GB) to plan")
    try:
        shape = model_shape(config.model)
    except UserError as exc:
        return FitResult(config, None, [], str(exc))
    plan = verl_plan(config, shape, gpu_gb)
    if plan.fits():
        return FitResult(config, plan, [], "")
    if config.verl.auto_fit:
        for candidate in _candidates(config, shape):
            candidate_plan = verl_plan(candidate, shape, gpu_gb)
            if candidate_plan.fits():
                return FitResult(candidate, candidate_plan, _changes(config, candidate), "")
    raise UserError(refusal(config, shape, plan))


def refusal(config: GRPORunConfig, shape: ModelShape, plan: VerlPlan) -> str:
    """Why the run cannot fit, with its numbers, and settings that would."""
    fixes = []
    v = config.verl
    for candidate in _candidates(replace(config, verl=replace(v, auto_fit=True)), shape):
        if verl_plan(candidate, shape, plan.gpu_memory_gb).fits():
            fixes.append(" ".join(f"verl.{key}={getattr(candidate.verl, key)}".lower() for key in FITTED_KEYS
                                  if getattr(candidate.verl, key) != getattr(v, key)))
            break
    for utilization in (0.5, 0.6, 0.7, 0.8):
        if utilization <= v.gpu_memory_utilization:
            continue
        candidate = replace(config, verl=replace(v, gpu_memory_utilization=utilization))
        if verl_plan(candidate, shape, plan.gpu_memory_gb).fits():
            fixes.append(f"verl.gpu_memory_utilization={utilization}")
            break
    where = f"{v.nnodes} x {v.n_gpus_per_node} GPUs of {plan.gpu_memory_gb:g} GB"
    return memory.refusal_message(f"{shape.name} on {where}", "; ".join(plan.problems()), fixes)


@dataclass(frozen=True)
class TrlPlan:
    """Per-GPU memory of the one-device TRL backend: the policy, and vLLM colocated on the same GPU.

    TRL's colocated vLLM does not sleep between generations (its sleep mode is
    off by default), so its whole budget stays taken while the policy trains.
    """

    gpu_memory_gb: float
    policy: TrainingMemory
    rollout: Optional[RolloutMemory]

    def problems(self) -> list[str]:
        memory_gib = gb_to_gib(self.gpu_memory_gb)
        found = []
        budget = 0.0
        if self.rollout is not None:
            budget = self.rollout.budget_gib
            if not self.rollout.fits():
                found.append(self.rollout.explain() + "; raise trl.vllm_gpu_memory_utilization")
        if self.policy.total_gib + budget > memory_gib:
            found.append(f"the policy update ({self.policy.explain()}) plus vLLM's {budget:.1f} GiB exceeds the "
                         f"{memory_gib:.1f} GiB of one {self.gpu_memory_gb:g} GB GPU; lower trl.per_device_batch_size "
                         "or use the verl backend on several GPUs")
        return found


def trl_plan(config: GRPORunConfig, shape: ModelShape, gpu_gb: float, *, with_vllm: bool, bf16: bool) -> TrlPlan:
    g, t = config.grpo, config.trl
    sequence = g.max_prompt_length + g.max_completion_length
    width = 2 if bf16 else 4  # the policy is loaded and trained in this dtype; AdamW keeps two moments in it
    policy = memory.fsdp_training_memory(
        shape, world_size=1, micro_batch_size=t.per_device_batch_size, sequence_length=sequence,
        gradient_checkpointing=g.gradient_checkpointing, param_offload=False, optimizer_offload=False,
        param_bytes=width, grad_bytes=width, optimizer_bytes=2 * width)
    rollout = None
    if with_vllm:
        rollout = memory.rollout_memory(
            shape, tensor_parallel_size=1, gpu_memory_gb=gpu_gb, gpu_memory_utilization=t.vllm_gpu_memory_utilization,
            group_sequences=g.num_generations, sequence_length=sequence)
    return TrlPlan(gpu_memory_gb=gpu_gb, policy=policy, rollout=rollout)


def check_trl(config: GRPORunConfig, *, with_vllm: bool, bf16: bool) -> Optional[TrlPlan]:
    """Refuse a TRL run on this GPU that cannot fit; None when there is no GPU or the model cannot be sized."""
    gpu_gb = memory.detect_gpu_memory_gb()
    if gpu_gb is None:
        return None
    try:
        shape = model_shape(config.model)
    except UserError:
        return None
    plan = trl_plan(config, shape, gpu_gb, with_vllm=with_vllm, bf16=bf16)
    problems = plan.problems()
    if problems:
        raise UserError(memory.refusal_message(f"{shape.name} with the trl backend", "; ".join(problems), []))
    return plan


# VERL saves the FSDP actor's fp32 parameters (4 bytes) and AdamW's two fp32 moments (8 bytes) per step.
CHECKPOINT_BYTES_PER_PARAMETER = 12
HARDWARE = (("H100 80 GB", 80), ("H200 141 GB", 141), ("B200 180 GB", 180))
# The model each SFT+GRPO preset starts from (its --init is an SFT model of this shape).
PRESET_MODELS = {"sft-grpo-llama3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
                 "sft-grpo-qwen2.5-7b": "Qwen/Qwen2.5-7B-Instruct"}


def checkpoint_gb(shape: ModelShape) -> float:
    """Disk per saved step of a VERL actor checkpoint, in GB."""
    return shape.num_parameters * CHECKPOINT_BYTES_PER_PARAMETER / 1e9


def hardware_table(presets: list[str]) -> str:
    """The Markdown table of docs/training.md: what auto_fit picks for each preset on each node type."""
    from deepicd.train.grpo_config import load_grpo_config

    lines = ["| preset | GPUs used | GPU | settings auto_fit picks | rollout / budget (GiB) | resident (GiB) "
             "| update peak (GiB) | checkpoint per save |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for name in presets:
        for node, gb in HARDWARE:
            run = load_grpo_config(name, [f"verl.gpu_memory_gb={gb}"], model=PRESET_MODELS.get(name),
                                  data="data", out="run")
            fitted = fit(run)
            v, plan = fitted.config.verl, fitted.plan
            picked = (f"TP {v.tensor_parallel_size}, micro-batch {v.micro_batch_size_per_gpu}, offload "
                      + ("params+optimizer" if v.param_offload else "optimizer" if v.optimizer_offload else "none"))
            lines.append(
                f"| `{name}` | {v.nnodes * v.n_gpus_per_node} | {node} | {picked} | "
                f"{plan.rollout.total_gib:.1f} / {plan.rollout.budget_gib:.1f} | {plan.resident_gib:.1f} | "
                f"{plan.update_gib:.1f} | {checkpoint_gb(model_shape(run.model)):.0f} GB |")
    return "\n".join(lines)
