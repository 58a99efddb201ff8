"""Which backend generates, and how: one typed config that distill, evaluate and the demo all nest.

One dataclass for the three backends keeps stage configs flat and lets a user
switch backend with a single override (`generator.backend=openai`); the fields a
backend does not use are simply ignored by it. `validate` checks the values a
typo would otherwise turn into a confusing failure deep inside a library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from deepicd.endpoints import EndpointConfig
from deepicd.errors import UserError

BACKENDS = ("transformers", "openai", "vllm")
APIS = ("completions", "chat")
SERVERS = ("vllm", "transformers")
CONTINUOUS_BATCHING = ("auto", "on", "off")
DTYPES = ("auto", "bfloat16", "float32")


@dataclass
class GeneratorConfig(EndpointConfig):
    """Settings of a generation backend; see docs/generation.md for each backend's use of them.

    The `openai` backend's server is described by the shared `EndpointConfig`
    keys (`url`, `api`, `api_key_env`, `concurrency`, `timeout_s`, `retries`,
    `backoff_s`, `allowed_hosts`, `allow_external_endpoint`), whose defaults
    are a generator's; the other backends ignore them.
    """

    # A model folder or a locally cached hub id; for `openai`, the model name the server was started with.
    model: str = ""
    backend: str = "transformers"  # transformers | openai | vllm
    # Tokenizer used to render prompts locally (openai completions API); empty: `model` when it is a folder.
    tokenizer_path: str = ""
    progress: bool = True  # show a progress bar

    # transformers (one process, CPU or one GPU)
    dtype: str = "auto"  # auto | bfloat16 | float32
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 8  # prompts per generate() call; each prompt yields n sequences
    continuous_batching: str = "auto"  # auto (on for CUDA) | on | off

    # openai (an OpenAI-compatible server: vllm serve, transformers serve), beside the endpoint keys
    server: str = "vllm"  # vllm | transformers: which server's extensions to use

    # vllm (offline engine on this node's GPUs)
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1  # engine replicas, each on its own tensor_parallel_size GPUs
    gpu_memory_utilization: float = 0.9  # share of each GPU the engine may take for weights and KV cache
    max_model_len: Optional[int] = None  # longest prompt + completion in tokens; None: the model's own limit
    chunk_size: int = 256  # prompts handed to an engine at a time; results are yielded per chunk


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"invalid generator config at key '{key}': {value!r}; expected one of {', '.join(allowed)}")


def _positive(config: GeneratorConfig, *keys: str) -> None:
    for key in keys:
        if getattr(config, key) <= 0:
            raise UserError(f"invalid generator config at key '{key}': must be positive, got {getattr(config, key)}")


def validate(config: GeneratorConfig) -> GeneratorConfig:
    """Raise UserError naming the key at fault; return the config unchanged when it is sound."""
    _choice("backend", config.backend, BACKENDS)
    _choice("api", config.api, APIS)
    _choice("server", config.server, SERVERS)
    _choice("continuous_batching", config.continuous_batching, CONTINUOUS_BATCHING)
    _choice("dtype", config.dtype, DTYPES)
    if not config.model.strip():
        raise UserError("invalid generator config at key 'model': empty; give a model folder, hub id or served name")
    _positive(config, "batch_size", "concurrency", "timeout_s", "tensor_parallel_size", "data_parallel_size")
    _positive(config, "chunk_size")
    if config.retries < 0 or config.backoff_s < 0:
        raise UserError("invalid generator config: 'retries' and 'backoff_s' must not be negative")
    if not 0.0 < config.gpu_memory_utilization <= 1.0:
        raise UserError(
            "invalid generator config at key 'gpu_memory_utilization': "
            f"{config.gpu_memory_utilization} is not in (0, 1]"
        )
    if config.max_model_len is not None and config.max_model_len <= 0:
        raise UserError(
            f"invalid generator config at key 'max_model_len': must be positive, got {config.max_model_len}"
        )
    return config
