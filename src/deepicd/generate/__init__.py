"""Generation backends behind one interface, chosen by name in the config.

Distillation, evaluation and the demo call `build_generator(config)` and never
import a backend directly, so switching from the CPU transformers path to a vLLM
engine or a served model is one config value. Backends are imported only when
chosen: vLLM, for one, exists only on GPU machines.
"""

from __future__ import annotations

from deepicd.generate.base import GenerationRequest, GenerationResult, Generator, SamplingConfig
from deepicd.generate.config import Backend, GeneratorConfig, require_model

__all__ = [
    "Backend",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "GeneratorConfig",
    "SamplingConfig",
    "build_generator",
]


def build_generator(config: GeneratorConfig) -> Generator:
    """The backend `config.backend` names, loaded and ready; call `close()` on it when done."""
    require_model(config)
    if config.backend == "transformers":
        from deepicd.generate.transformers_backend import TransformersGenerator

        return TransformersGenerator(config)
    if config.backend == "openai":
        from deepicd.generate.openai_backend import OpenAIGenerator

        return OpenAIGenerator(config)
    from deepicd.generate.vllm_backend import VLLMGenerator

    return VLLMGenerator(config)
