"""Which backend generates, and how: one typed config that distill, evaluate and the demo all nest.

One dataclass for the three backends keeps stage configs flat and lets a user
switch backend with a single override (`generator.backend=openai`); the fields a
backend does not use are simply ignored by it. The config checks its own values
when built (`__post_init__`), before a typo can become a confusing failure deep
inside a library; the model, given when a stage runs, is checked by `require_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Optional

from deepicd.endpoints import EndpointConfig
from deepicd.errors import UserError
from deepicd.schema import choice, require

class Backend(StrEnum):
    transformers = "transformers"  # one process, CPU or one GPU
    openai = "openai"  # an OpenAI-compatible server (vllm serve, transformers serve)
    vllm = "vllm"  # the offline engine on this node's GPUs


class Server(StrEnum):
    vllm = "vllm"
    transformers = "transformers"


class ContinuousBatching(StrEnum):
    auto = "auto"
    on = "on"
    off = "off"


class Dtype(StrEnum):
    auto = "auto"
    bfloat16 = "bfloat16"
    float32 = "float32"


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
    KEY_PREFIX: ClassVar[str] = "generator."  # this block's place in distill and evaluate configs, for errors

    def __post_init__(self) -> None:
        super().__post_init__()
        where = "generator config"
        self.backend = choice(Backend, self.backend, "generator.backend", where)
        self.server = choice(Server, self.server, "generator.server", where)
        self.continuous_batching = choice(ContinuousBatching, self.continuous_batching,
                                          "generator.continuous_batching", where)
        self.dtype = choice(Dtype, self.dtype, "generator.dtype", where)
        for key in ("batch_size", "tensor_parallel_size", "data_parallel_size", "chunk_size"):
            require(getattr(self, key) >= 1, where, f"generator.{key}", "must be at least 1", getattr(self, key))
        require(0.0 < self.gpu_memory_utilization <= 1.0, where, "generator.gpu_memory_utilization",
                "must be in (0, 1]", self.gpu_memory_utilization)
        require(self.max_model_len is None or self.max_model_len > 0, where, "generator.max_model_len",
                "must be positive (or null: the model's own limit)", self.max_model_len)


def require_model(config: GeneratorConfig) -> GeneratorConfig:
    """The one setting a preset cannot hold: which model generates, given when the stage runs."""
    if not config.model.strip():
        raise UserError("invalid generator config at key 'model': empty; give a model folder, hub id or served name")
    return config
