"""GRPO on VERL: our typed config -> the exact `python -m verl.trainer.main_ppo` command, checked and run.

We never re-implement VERL's trainer; we write its Hydra overrides. Three
choices are worth knowing:

- Reward wiring uses the 0.9 keys (`reward.custom_reward_function.*`,
  `reward.reward_manager.name`). The pre-0.9 top-level keys still compose but
  are silently ignored, and VERL then falls back to a scorer that fails on our
  data source. The reward preset travels as `reward_kwargs` (preset name and
  overrides), which VERL passes to `compute_score` on every call.
- The `<think>` prefill: VERL's agent loop renders the `prompt` messages with
  the tokenizer's chat template and `add_generation_prompt=True`. We pass
  `actor_rollout_ref.model.custom_chat_template` = the model's own template
  followed by `{% if add_generation_prompt %}<think>{% endif %}`, verified by
  rendering both. VERL saves that template with its checkpoints, so the export
  removes the suffix again: downstream stages add the prefill themselves.
- Preflight runs every check that needs no GPU work (config against VERL's own
  schema, data files, reward function loaded by VERL's loader, judge, model,
  GPU count) and reports all failures at once, before Ray starts anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from deepicd.errors import ConfigError, UserError
from deepicd.train.grpo_config import GRPORunConfig

VERSIONED = ("deepicd", "torch", "transformers", "verl", "vllm", "ray", "datasets", "tokenizers")
REWARD_FUNCTION = "compute_score"
JUDGE = "judge"
TEMPLATE_MARK = "{#- deepicd: assistant prefill -#}"
_SAFE_VALUE = re.compile(r"[A-Za-z_/~.][A-Za-z0-9_./:@+~-]*")
_NOT_A_STRING = re.compile(r"(?i)(true|false|null|none|nan|[+-]?inf|[+-]?[0-9.][0-9._e+-]*)")


def hydra_quote(text: str) -> str:
    """A string as a Hydra override value that composes back to exactly `text`.

    Hydra reads `'...'` with `\\'` for a quote, and backslashes doubled only
    where they precede a quote or the end; OmegaConf then reads `${` as an
    interpolation, so it is escaped as `\\${` (doubling backslashes before it).
    """
    text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)
    text = re.sub(r"(\\+)(?='|\Z)", lambda m: m.group(1) * 2, text)
    return "'" + text.replace("'", "\\'") + "'"


def hydra_value(value: Any) -> str:
    """Any config value written as Hydra override syntax."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    if _SAFE_VALUE.fullmatch(text) and not _NOT_A_STRING.fullmatch(text):
        return text
    return hydra_quote(text)


def shell_line(argv: Sequence[str]) -> str:
    """One shell line; arguments holding newlines use bash's $'...' quoting so the line stays one line."""
    parts = []
    for arg in argv:
        if "\n" in arg or "\t" in arg or "\r" in arg:
            escaped = arg.replace("\\", "\\\\").replace("'", "\\'")
            escaped = escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
            parts.append(f"$'{escaped}'")
        else:
            parts.append(shlex.quote(arg))
    return " ".join(parts)


def reward_entry_path() -> Path:
    """The installed `verl_entry.py`, the file VERL imports by path."""
    from deepicd.rewards import verl_entry

    return Path(verl_entry.__file__).resolve()


def _jinja_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _render(template: str, messages: list[dict], generation: bool, special: dict[str, str]) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[messages], chat_template=template, add_generation_prompt=generation, **special
    )
    return rendered[0]


def prefill_template(base: str, prefill: str, special_tokens: dict[str, str] | None = None) -> str:
    """`base` extended so its generation prompt ends with `prefill`; checked by rendering both templates."""
    from deepicd.prompts import task

    suffix = TEMPLATE_MARK + "{%- if add_generation_prompt %}{{- " + _jinja_literal(prefill) + " }}{%- endif %}"
    special = dict(special_tokens or {})
    messages = task.messages("Chief complaint: chest pain.")
    try:
        plain = _render(base, messages, False, special)
        prompt = _render(base, messages, True, special)
    except Exception as exc:  # jinja2 raises many types for a broken template
        raise UserError(f"the model's chat template does not render: {exc}") from exc
    # A template may end in literal whitespace that would land between the generation prompt and
    # the prefill once text follows it; the right-stripped variant avoids that.
    for candidate in (base + suffix, base.rstrip() + suffix):
        try:
            if (_render(candidate, messages, True, special) == prompt + prefill
                    and _render(candidate, messages, False, special) == plain):
                return candidate
        except Exception:
            continue
    raise UserError(
        "cannot extend the model's chat template so that the assistant turn starts with the prefill: with the "
        "prefill appended it no longer renders as the generation prompt followed by the prefill. Save a copy of "
        "the template whose generation prompt is the last thing it writes, and pass it as verl.chat_template_file"
    )


def strip_prefill(template: str) -> str:
    """The template without the suffix `prefill_template` added (unchanged when it has none)."""
    index = template.find(TEMPLATE_MARK)
    return template[:index] if index >= 0 else template


def base_chat_template(config: GRPORunConfig) -> tuple[str, dict[str, str]]:
    """The model's chat template (or the configured file) and the special tokens it may refer to."""
    template_file = config.verl.chat_template_file
    if template_file:
        path = Path(template_file)
        if not path.is_file():
            raise UserError(f"verl.chat_template_file not found: {path}")
        return path.read_text(encoding="utf-8"), {}
    from deepicd import models

    try:
        tokenizer = models.load_tokenizer(config.model, purpose="generate")
    except UserError as exc:
        raise UserError(
            f"{exc}. The <think> prefill is added through the model's chat template: make the model available "
            "locally, or save its chat template to a file and set verl.chat_template_file=PATH"
        ) from exc
    template = tokenizer.chat_template
    if not isinstance(template, str) or not template:
        raise UserError(f"the tokenizer of {config.model!r} has no chat template; set verl.chat_template_file=PATH")
    special = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    return template, special


def judge_enabled(config: GRPORunConfig) -> bool:
    from deepicd.rewards.config import load_reward_config

    return JUDGE in load_reward_config(config.reward.preset, list(config.reward.overrides)).components


def check_judge_placement(config: GRPORunConfig) -> None:
    """Refuse judge settings that cannot work where VERL runs the reward workers.

    VERL spreads reward workers round-robin over every node of the Ray cluster, so
    a loopback judge URL reaches a different (absent) server on each other node,
    and those workers would silently fall back. VERL also scores a response 0.0
    when its reward times out, so its timeout must outlast the judge's deadline.
    """
    if not judge_enabled(config):
        return
    from deepicd.endpoints import is_loopback
    from deepicd.rewards.config import load_reward_config
    from deepicd.rewards.verl_entry import check_timeout

    v = config.verl
    judge = load_reward_config(config.reward.preset, list(config.reward.overrides)).judge
    if (v.nnodes > 1 or v.ray_address) and is_loopback(judge.url):
        where = f"verl.nnodes={v.nnodes}" if v.nnodes > 1 else f"verl.ray_address={v.ray_address}"
        raise ConfigError(
            f"invalid grpo config: the judge URL {judge.url} is a loopback address, but with {where} VERL runs "
            "reward workers on every node of the Ray cluster and each would reach its own, absent, server. Serve "
            "the judge on an address all nodes reach and pass it, e.g. "
            "reward.overrides=[judge.url=http://<judge-node-ip>:8000/v1]"
        )
    problem = check_timeout(v.reward_timeout_s, judge.batch_deadline_s)
    if problem:
        raise ConfigError(f"invalid grpo config at key 'verl.reward_timeout_s': {problem}")


CLOSED_TURN_DIR = "prompts-closed-turn"


def train_files(config: GRPORunConfig) -> dict[str, Path]:
    """The parquet files VERL reads per split: preprocess's, or (closed-turn prefill) the run's own copies."""
    from deepicd.split_tables import verl_path

    if config.verl.prefill == "closed-turn":
        folder = Path(config.out).resolve() / CLOSED_TURN_DIR
        return {split: folder / f"{split}.parquet" for split in ("train", "val")}
    return {split: verl_path(Path(config.data).resolve(), split) for split in ("train", "val")}


def write_closed_turn_prompts(config: GRPORunConfig) -> dict[str, Path]:
    """Copies of the VERL files whose prompts end with a closed assistant message holding the prefill.

    This is what the published run fed VERL: its prompts carried the assistant's `<think>` as a finished
    message, and VERL's agent loop then opened a new assistant turn after it.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from deepicd.manifest import atomic_open
    from deepicd.rewards.config import load_reward_config
    from deepicd.split_tables import verl_path

    prefill = load_reward_config(config.reward.preset, list(config.reward.overrides)).prefill
    written = {}
    for split, target in train_files(config).items():
        table = pq.read_table(verl_path(config.data, split))
        column = table.schema.field("prompt")
        prompts = [list(messages) + [{"role": "assistant", "content": prefill}]
                   for messages in table.column("prompt").to_pylist()]
        table = table.set_column(table.schema.get_field_index("prompt"), column,
                                 pa.array(prompts, type=column.type))
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(target, "wb") as handle:
            pq.write_table(table, handle)
        written[split] = target
    return written


def overrides(config: GRPORunConfig, chat_template: str | None) -> list[str]:
    """VERL 0.9 Hydra overrides for the run (`+key=value` adds a key VERL's schema lacks)."""
    g, v = config.grpo, config.verl
    if not g.bf16:
        raise ConfigError("invalid grpo config at key 'grpo.bf16': VERL trains in bfloat16 mixed precision; set it true")
    check_judge_placement(config)
    out = Path(config.out).resolve()
    use_judge = judge_enabled(config)
    files = train_files(config)
    pairs: list[tuple[str, Any]] = [
        ("algorithm.adv_estimator", "grpo"),
        ("algorithm.norm_adv_by_std_in_grpo", g.advantage_scale == "group"),
        ("algorithm.use_kl_in_reward", g.kl_in_reward),
        ("algorithm.kl_ctrl.kl_coef", g.kl_loss_coef),
        ("data.train_files", str(files["train"])),
        ("data.val_files", str(files["val"])),
        ("data.prompt_key", "prompt"),
        ("data.train_batch_size", g.train_batch_size),
        ("data.max_prompt_length", g.max_prompt_length),
        ("data.max_response_length", g.max_completion_length),
        ("data.filter_overlong_prompts", True),
        ("data.truncation", "error"),
        ("data.seed", g.seed),
        ("data.train_max_samples", config.max_train_samples),
        ("data.val_max_samples", config.max_val_samples),
        ("actor_rollout_ref.model.path", config.model),
        ("actor_rollout_ref.model.use_remove_padding", v.remove_padding),
        ("actor_rollout_ref.model.enable_gradient_checkpointing", g.gradient_checkpointing),
        ("actor_rollout_ref.actor.optim.lr", g.learning_rate),
        ("actor_rollout_ref.actor.optim.lr_warmup_steps", g.warmup_steps),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", g.mini_batch_size),
        ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", v.micro_batch_size_per_gpu),
        ("actor_rollout_ref.actor.ppo_epochs", 1),
        # VERL clips with clip_ratio_low/high, which its actor.yaml sets to 0.2 and which win over clip_ratio.
        ("actor_rollout_ref.actor.clip_ratio", g.clip_ratio),
        ("actor_rollout_ref.actor.clip_ratio_low", g.clip_ratio),
        ("actor_rollout_ref.actor.clip_ratio_high", g.clip_ratio),
        ("actor_rollout_ref.actor.entropy_coeff", g.entropy_coef),
        ("actor_rollout_ref.actor.use_kl_loss", g.kl_loss_coef > 0),
        ("actor_rollout_ref.actor.kl_loss_coef", g.kl_loss_coef),
        ("actor_rollout_ref.actor.fsdp_config.dtype", "bfloat16"),
        ("actor_rollout_ref.actor.fsdp_config.param_offload", v.param_offload),
        ("actor_rollout_ref.actor.fsdp_config.optimizer_offload", v.optimizer_offload),
        ("actor_rollout_ref.ref.fsdp_config.param_offload", v.param_offload),
        ("+actor_rollout_ref.model.override_config.attn_implementation", v.attn_implementation),
        ("actor_rollout_ref.rollout.name", v.rollout),
        ("actor_rollout_ref.rollout.dtype", "bfloat16"),
        ("actor_rollout_ref.rollout.n", g.num_generations),
        ("actor_rollout_ref.rollout.temperature", g.temperature),
        ("actor_rollout_ref.rollout.top_p", g.top_p),
        ("actor_rollout_ref.rollout.seed", g.seed),
        ("actor_rollout_ref.rollout.tensor_model_parallel_size", v.tensor_parallel_size),
        ("actor_rollout_ref.rollout.gpu_memory_utilization", v.gpu_memory_utilization),
        ("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", v.micro_batch_size_per_gpu),
        ("actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu", v.micro_batch_size_per_gpu),
        ("reward.custom_reward_function.path", str(reward_entry_path())),
        ("reward.custom_reward_function.name", REWARD_FUNCTION),
        ("+reward.custom_reward_function.reward_kwargs.preset", config.reward.preset),
        ("+reward.custom_reward_function.reward_kwargs.overrides", list(config.reward.overrides)),
        ("reward.reward_manager.name", "rate_limited" if use_judge else "naive"),
        ("reward.num_workers", v.reward_workers),
        ("trainer.nnodes", v.nnodes),
        ("trainer.n_gpus_per_node", v.n_gpus_per_node),
        ("trainer.total_epochs", g.epochs),
        ("trainer.save_freq", g.save_steps),
        ("trainer.test_freq", g.eval_steps if g.eval_steps > 0 else -1),
        ("trainer.val_before_train", v.val_before_train),
        ("trainer.resume_mode", "auto"),
        ("trainer.max_actor_ckpt_to_keep", v.max_checkpoints_to_keep),
        ("trainer.default_local_dir", str(out / "checkpoints")),
        ("trainer.project_name", v.project_name),
        ("trainer.experiment_name", v.experiment_name or config.name),
        ("trainer.logger", list(v.logger)),
        ("hydra.run.dir", str(out / "hydra")),  # VERL's Hydra main would write outputs/ in the working directory
    ]
    if chat_template is not None:
        pairs.append(("actor_rollout_ref.model.custom_chat_template", chat_template))
    if g.max_steps > 0:
        pairs.append(("trainer.total_training_steps", g.max_steps))
    if use_judge:
        pairs += [("+reward.max_concurrent", v.judge_max_concurrent), ("+reward.timeout", float(v.reward_timeout_s))]
    if v.ray_address:
        pairs.append(("+ray_kwargs.ray_init.address", v.ray_address))
    return [f"{key}={hydra_value(value)}" for key, value in pairs] + list(v.extra_overrides)


TEMPLATE_AT_LAUNCH = "<the chat template of {model} with the {prefill} prefill, read from the model at launch>"


def dry_run_command(config: GRPORunConfig) -> tuple[list[str], list[str]]:
    """The command, and notes on what this machine lacks; a login node need not have the model or the data.

    Without the model, the chat-template override cannot be rendered here; the
    line shows `TEMPLATE_AT_LAUNCH` in its place, and the launch reads the
    template from the model.
    """
    from deepicd.rewards.config import load_reward_config
    from deepicd.split_tables import verl_path

    notes = []
    prefill = load_reward_config(config.reward.preset, list(config.reward.overrides)).prefill
    if config.verl.prefill == "closed-turn":
        notes.append(f"verl.prefill=closed-turn: the prompt files under {train_files(config)['train'].parent} are "
                     "written at launch from the preprocess output")
        return command(config), notes
    try:
        base, special = base_chat_template(config)
        template = prefill_template(base, prefill, special)
    except UserError as exc:
        template = TEMPLATE_AT_LAUNCH.format(model=config.model, prefill=prefill)
        notes.append(f"model not available here ({exc}); actor_rollout_ref.model.custom_chat_template is described, "
                     "not rendered: the launch reads it from the model's tokenizer")
    for split in ("train", "val"):
        if not verl_path(config.data, split).is_file():
            notes.append(f"data file not found here: {verl_path(config.data, split)} (--preflight checks it)")
    return command(config, chat_template=template), notes


def command(config: GRPORunConfig, chat_template: str | None = None, python: str | None = None) -> list[str]:
    """The full argv of the VERL run (the chat template is built from the model when not given).

    With `verl.prefill=closed-turn` the model's own template is used and no template is passed.
    """
    if config.verl.prefill == "closed-turn":
        chat_template = None
    elif chat_template is None:
        from deepicd.rewards.config import load_reward_config

        prefill = load_reward_config(config.reward.preset, list(config.reward.overrides)).prefill
        base, special = base_chat_template(config)
        chat_template = prefill_template(base, prefill, special)
    return [python or sys.executable, "-m", "verl.trainer.main_ppo", *overrides(config, chat_template)]


def verl_overrides(argv: Sequence[str]) -> list[str]:
    """The Hydra overrides of a command made by `command`."""
    index = list(argv).index("verl.trainer.main_ppo")
    return list(argv[index + 1:])


def compose_verl(hydra_overrides: Sequence[str]):
    """Compose VERL's own `ppo_trainer` config with the overrides: the check that every key exists."""
    import verl
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    config_dir = Path(verl.__file__).resolve().parent / "trainer" / "config"
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            return compose(config_name="ppo_trainer", overrides=list(hydra_overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"VERL {verl.__version__} rejects the overrides: {str(exc).splitlines()[0]}") from exc
    finally:
        GlobalHydra.instance().clear()


def check_attention(implementation: str) -> str:
    """'' when transformers can build the FSDP actor with this attention kernel here; otherwise why not."""
    from transformers.utils import import_utils

    needs = {
        "flash_attention_2": ("is_flash_attn_2_available", "the flash-attn package"),
        "flash_attention_3": ("is_flash_attn_3_available", "the flash-attn 3 (hopper) package"),
    }
    if implementation not in needs:
        return ""
    probe, package = needs[implementation]
    available = getattr(import_utils, probe, None)
    if available is not None and available():
        return ""
    return (f"verl.attn_implementation={implementation} needs {package}, which is not importable here; "
            "install it for this torch, or use verl.attn_implementation=sdpa (exact with remove_padding)")


def check_engine_batches(verl_config) -> str:
    """'' when VERL's own launch-time validation accepts the composed config (batch and micro-batch arithmetic)."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            validate_config(verl_config, use_reference_policy=need_reference_policy(verl_config),
                            use_critic=need_critic(verl_config))
    except (AssertionError, ValueError) as exc:
        return f"VERL's validate_config refuses the run: {exc}"
    return ""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def check_memory(config: GRPORunConfig) -> Check:
    """The memory plan of the run as configured (auto_fit has already been applied by the caller)."""
    from deepicd.train import grpo_memory

    try:
        fitted = grpo_memory.fit(replace(config, verl=replace(config.verl, auto_fit=False)))
    except UserError as exc:
        return Check("memory", False, str(exc))
    if fitted.plan is None:
        return Check("memory", False, f"cannot plan: {fitted.note}")
    return Check("memory", True, fitted.plan.summary())


def _sample_row(config: GRPORunConfig) -> dict:
    from deepicd.split_tables import verl_path
    from deepicd.train.data import _read

    return _read(verl_path(config.data, "train"), 1)[0]


def check_reward(verl_config, row: dict, use_judge: bool) -> str:
    """Load the reward function through VERL's own loader and score a correct answer; '' when fine."""
    from verl.trainer.ppo.reward import get_custom_reward_fn

    from deepicd.rewards.config import load_reward_config
    from deepicd.rewards.scorer import RewardScorer

    fn = get_custom_reward_fn(verl_config)
    if fn is None:
        return "VERL found no custom reward function in the composed config"
    gold = row["reward_model"]["ground_truth"]
    completion = f" The findings point to this code.</think>\n<diagnosis>{gold[0]}</diagnosis>"
    kwargs = dict(data_source=row.get("data_source"), solution_str=completion, ground_truth=gold,
                  extra_info=row.get("extra_info"))
    result = fn(**kwargs)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    preset = verl_config.reward.custom_reward_function.reward_kwargs
    reward_config = load_reward_config(preset.preset, list(preset.overrides))
    rules_only = replace(reward_config, components=[c for c in reward_config.components if c != JUDGE])
    expected = RewardScorer(rules_only).score_rules(completion, gold)
    if not isinstance(result, dict) or not all(isinstance(v, float) for v in result.values()):
        return f"the reward function must return a dict of floats, got {result!r}"
    if result.get("acc") != 1.0 or result.get("valid") != 1.0:
        return f"a correct answer ({gold[0]}) did not score as exact: {result}"
    rules = sum(v for k, v in expected.terms.items() if k != JUDGE)
    if abs(sum(result[k] for k in expected.terms if k != JUDGE) - rules) > 1e-6:
        return f"the reward terms differ from the preset's: got {result}, expected {expected.terms}"
    if use_judge and result.get("judge_fallback") == 1.0:
        from deepicd.endpoints import redact

        return (f"the judge at {redact(reward_config.judge.url)} did not answer (the reward fell back); start the "
                "judge server or set reward.overrides=[judge.url=...]")
    return ""


PROBE_DEADLINE_S = 30.0


def _with_short_judge_deadline(composed):
    """A copy of the composed config whose reward gives up on a silent judge within PROBE_DEADLINE_S."""
    import copy

    from omegaconf import open_dict

    from deepicd.rewards.config import load_reward_config

    probe = copy.deepcopy(composed)
    kwargs = probe.reward.custom_reward_function.reward_kwargs
    deadline = load_reward_config(kwargs.preset, list(kwargs.overrides)).judge.batch_deadline_s
    with open_dict(probe):
        kwargs.overrides = [*kwargs.overrides, f"judge.batch_deadline_s={min(deadline, PROBE_DEADLINE_S)}"]
    return probe


def check_judge_reach(config: GRPORunConfig) -> Check:
    """Ask the judge from every node of the Ray cluster, where VERL runs the reward workers."""
    from deepicd.rewards.config import load_reward_config
    from deepicd.train import judge_reach

    url = load_reward_config(config.reward.preset, list(config.reward.overrides)).judge.url
    address = config.verl.ray_address or "auto"
    try:
        ok, detail = judge_reach.describe(judge_reach.probe_from_nodes(address, url), url)
    except Exception as exc:  # ray.init raises ConnectionError, RuntimeError, ...
        return Check("judge-reach", False, f"cannot ask the judge from the cluster's nodes (Ray at {address}: {exc}); "
                     "set verl.ray_address to the running cluster")
    return Check("judge-reach", ok, detail)


def available_gpus(config: GRPORunConfig) -> tuple[int, str]:
    """GPUs VERL will see: those of the Ray cluster when an address is set, else the local ones."""
    if config.verl.ray_address:
        import ray

        ray.init(address=config.verl.ray_address, log_to_driver=False, logging_level="ERROR")
        try:
            return int(ray.cluster_resources().get("GPU", 0)), f"Ray cluster at {config.verl.ray_address}"
        finally:
            ray.shutdown()
    import torch

    return (torch.cuda.device_count() if torch.cuda.is_available() else 0), "this machine"


def preflight(config: GRPORunConfig, argv: Sequence[str]) -> list[Check]:
    """Every check that needs no GPU work, in order; each failure says what to fix."""
    from deepicd import models
    from deepicd.split_tables import verl_path
    from deepicd.train.data import check_verl_file

    checks: list[Check] = []
    use_judge = judge_enabled(config)
    try:
        composed = compose_verl(verl_overrides(argv))
        checks.append(Check("config", True, "the overrides compose against VERL's ppo_trainer schema"))
    except ConfigError as exc:
        composed = None
        checks.append(Check("config", False, str(exc)))

    if composed is not None:
        problem = check_engine_batches(composed)
        checks.append(Check("batches", not problem, problem or "VERL's validate_config accepts the batch sizes"))
    checks.append(check_memory(config))
    problem = check_attention(config.verl.attn_implementation)
    checks.append(Check("attention", not problem, problem or f"{config.verl.attn_implementation} is available"))

    data_ok = True
    for split in ("train", "val"):
        problems = check_verl_file(verl_path(config.data, split), need_note=use_judge)
        data_ok &= not problems
        checks.append(Check(f"data:{split}", not problems, problems[0] if problems else str(verl_path(config.data, split))))

    try:
        resolved = models.resolve(config.model, local_only=False)
        checks.append(Check("model", True, resolved))
    except UserError as exc:
        checks.append(Check("model", False, str(exc)))

    if composed is not None and data_ok:
        try:
            problem = check_reward(_with_short_judge_deadline(composed), _sample_row(config), use_judge)
        except Exception as exc:  # the user's reward preset or judge settings may fail in many ways
            problem = f"{type(exc).__name__}: {exc}"
        checks.append(Check("reward", not problem, problem or "loaded by VERL's loader; a correct answer scores as exact"
                            + (" (judge answered)" if use_judge else "")))
    else:
        checks.append(Check("reward", False, "skipped: needs a composable config and readable data"))

    if use_judge and (config.verl.ray_address or config.verl.nnodes > 1):
        checks.append(check_judge_reach(config))

    need = config.verl.nnodes * config.verl.n_gpus_per_node
    try:
        have, where = available_gpus(config)
        checks.append(Check("gpus", have >= need, f"{have} GPU(s) on {where}; the run needs "
                            f"{config.verl.nnodes} node(s) x {config.verl.n_gpus_per_node} = {need}"))
    except Exception as exc:  # ray.init raises ConnectionError, RuntimeError, ...
        checks.append(Check("gpus", False, f"cannot count GPUs: {exc}"))
    return checks


def launch(argv: Sequence[str]) -> int:
    """Run the engine with its output shown live; return its exit code (130 after Ctrl-C)."""
    process = subprocess.Popen(list(argv))
    try:
        return process.wait()
    except KeyboardInterrupt:
        # The engine shares our process group and got the same SIGINT; let it shut down cleanly.
        try:
            process.wait(timeout=120)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        return 130


_STEP_DIR = re.compile(r"global_step_(\d+)")


TRACKER = "latest_checkpointed_iteration.txt"  # VERL writes it after a checkpoint is complete


def find_checkpoint(path: str | Path, step: int | None = None) -> Path:
    """The `global_step_N/actor` folder to export, from a run folder, its checkpoints, or a step folder."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"checkpoint folder not found: {path}")
    if path.name == "actor" and _STEP_DIR.fullmatch(path.parent.name):
        return path
    if _STEP_DIR.fullmatch(path.name):
        if not (path / "actor").is_dir():
            raise UserError(f"{path} has no actor/ folder: not a VERL FSDP checkpoint")
        return path / "actor"
    if (path / "checkpoints").is_dir() and not any(_STEP_DIR.fullmatch(p.name) for p in path.iterdir()):
        path = path / "checkpoints"
    steps = {int(m.group(1)): p for p in path.iterdir() if p.is_dir() and (m := _STEP_DIR.fullmatch(p.name))}
    if not steps:
        raise UserError(f"no global_step_N checkpoints in {path}")
    if step is None:
        step = _tracked_step(path)
    if step not in steps:
        raise UserError(f"no checkpoint for step {step} in {path}; found steps {sorted(steps)}")
    return find_checkpoint(steps[step])


def _tracked_step(folder: Path) -> int:
    """The last complete step: VERL names it in its tracker file only once every rank has saved it.

    A newer global_step_N folder without the tracker's word may be a save that was cut short,
    so the highest step is never taken on trust (VERL's own resume reads the tracker too).
    """
    tracker = folder / TRACKER
    text = tracker.read_text().strip() if tracker.is_file() else ""
    if not text.isdigit():
        raise UserError(f"{tracker} is missing or unreadable, so no checkpoint in {folder} is known to be complete; "
                        "pass --step N to export that step anyway")
    return int(text)


def export_command(actor_dir: Path, target: Path, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp",
            "--local_dir", str(actor_dir), "--target_dir", str(target)]


def restore_chat_template(folder: Path) -> bool:
    """Remove our prefill suffix from a saved tokenizer's chat template; True if one was removed."""
    changed = False
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        text = jinja.read_text(encoding="utf-8")
        if TEMPLATE_MARK in text:
            jinja.write_text(strip_prefill(text), encoding="utf-8")
            changed = True
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file():
        data = json.loads(config_file.read_text(encoding="utf-8"))
        template = data.get("chat_template")
        if isinstance(template, str) and TEMPLATE_MARK in template:
            data["chat_template"] = strip_prefill(template)
            config_file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            changed = True
    return changed


def export(checkpoint: str | Path, target: str | Path, step: int | None = None) -> Path:
    """Merge a VERL FSDP checkpoint into a Hugging Face folder at `target` (which appears only when complete)."""
    from deepicd.manifest import staged_directory

    actor = find_checkpoint(checkpoint, step)
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise UserError(f"export target {target} exists and is a file")

    with staged_directory(target) as staging:
        code = subprocess.run(export_command(actor, staging)).returncode
        if code != 0:
            raise UserError(f"verl.model_merger failed with exit code {code} for {actor}")
        restore_chat_template(staging)
    return target


@dataclass(frozen=True)
class VerlRunResult:
    """What a VERL run left: the engine's exit code, its manifest, and the exported model if there is one."""

    exit_code: int
    manifest: Path
    model_dir: Path | None = None
    exported_from: Path | None = None


# What a run leaves in OUT; `overwrite` removes these before it starts over.
RUN_ENTRIES = ("checkpoints", "model", "manifest.json", "hydra")


def run_manifest(config: GRPORunConfig, argv: Sequence[str]) -> dict:
    """The run's record before launch: settings, the engine's exact command, data checksums and versions."""
    from dataclasses import asdict

    from deepicd import manifest
    from deepicd.prompts import task
    from deepicd.split_tables import verl_path

    data = {split: verl_path(config.data, split) for split in ("train", "val")}
    return manifest.record(
        "train-grpo", method=config.stage, config=asdict(config), seed=config.grpo.seed,
        inputs={**{split: path for split, path in data.items() if path.is_file()}, "model": config.model},
        prompts={"task": task.VERSION},
        result={"backend": "verl", "command": list(argv), "exit_code": None, "model": None, "exported_from": None},
        packages=VERSIONED,
    )


def train(config: GRPORunConfig, argv: Sequence[str], *, export_model: bool = True) -> VerlRunResult:
    """Run VERL's command with live output, then export its last checkpoint to OUT/model.

    OUT/manifest.json is written before the launch (so a crashed run still says
    what it was) and again at the end with the exit code and the export.
    """
    from deepicd import manifest, run_folder

    out = Path(config.out)
    run_folder.refuse_overlap([out / name for name in RUN_ENTRIES], {"model": config.model, "data": config.data})
    # VERL resumes from the checkpoints it finds; starting over means removing them.
    run_folder.start_resumable(out, RUN_ENTRIES, overwrite=config.overwrite)
    record = run_manifest(config, argv)
    path = manifest.write(out, record, finished=False)
    code = launch(argv)
    model_dir = exported_from = None
    if code == 0 and export_model and config.verl.export_after_training:
        exported_from = find_checkpoint(out / "checkpoints")
        model_dir = export(out / "checkpoints", out / "model")
    record["result"].update(exit_code=code, model=str(model_dir) if model_dir else None,
                            exported_from=str(exported_from) if exported_from else None)
    manifest.write(out, record, outputs=manifest.describe_outputs(out, ["model"], hashed=False))
    return VerlRunResult(code, path, model_dir, exported_from)
