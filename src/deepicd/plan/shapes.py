"""The shape of a decoder-only model, read from its `config.json`, and what it implies in bytes.

Why a shape rather than the model: a run should be refused before it loads
60 GiB of weights onto a GPU that cannot hold them. Everything the memory plan
needs (parameter count, key/value cache per token, the size of one decoder
layer) follows from a dozen numbers in `config.json`, which is found, in order:

1. in a local model folder (or a `config.json` path given directly);
2. in the Hugging Face cache, looked up offline (nothing is ever downloaded);
3. among the shapes bundled in `plan/shapes/` for the paper's models, so a
   plan can be made on a machine that has not fetched them yet.

The parameter count covers dense Llama-style decoders (Llama, Qwen2, Qwen3,
Mistral): embeddings, attention q/k/v/o with the biases the family has, the
gated MLP, the RMSNorms and the output head unless it is tied to the
embeddings. Mixture-of-experts configs are refused rather than miscounted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from deepicd.errors import UserError

SHAPES_DIR = Path(__file__).resolve().parent / "shapes"
# Families whose attention has q/k/v biases without saying so in config.json (Qwen2's config has no key).
_QKV_BIAS_TYPES = {"qwen2"}
# Families with an RMSNorm on each head's queries and keys.
_QK_NORM_TYPES = {"qwen3"}
_MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size")


@dataclass(frozen=True)
class ModelShape:
    """The numbers of `config.json` that decide memory; sizes in elements, not bytes."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    model_type: str = ""
    qkv_bias: bool = False  # biases on q, k and v (Qwen2; Llama with attention_bias)
    o_bias: bool = False  # bias on the output projection (Llama with attention_bias)
    mlp_bias: bool = False
    qk_norm: bool = False  # per-head RMSNorm of queries and keys (Qwen3)

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @property
    def kv_projection_parameters(self) -> int:
        """k and v projections of one layer: what tensor parallelism replicates when kv heads < TP."""
        return 2 * (self.hidden_size * self.kv_dim + (self.kv_dim if self.qkv_bias else 0))

    @property
    def layer_parameters(self) -> int:
        """One decoder layer: attention, gated MLP and its two RMSNorms."""
        h, i = self.hidden_size, self.intermediate_size
        attention = h * self.q_dim + self.q_dim * h + self.kv_projection_parameters
        if self.qkv_bias:
            attention += self.q_dim
        if self.o_bias:
            attention += h
        if self.qk_norm:
            attention += 2 * self.head_dim
        mlp = 3 * h * i + ((2 * i + h) if self.mlp_bias else 0)
        return attention + mlp + 2 * h

    @property
    def embedding_parameters(self) -> int:
        """Input embeddings plus the output head (zero extra when tied)."""
        table = self.vocab_size * self.hidden_size
        return table if self.tie_word_embeddings else 2 * table

    @property
    def num_parameters(self) -> int:
        return self.embedding_parameters + self.num_hidden_layers * self.layer_parameters + self.hidden_size

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """Key/value cache of one token over all layers, on one unsharded copy of the model."""
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * dtype_bytes

    def weight_bytes(self, dtype_bytes: int = 2) -> int:
        return self.num_parameters * dtype_bytes


def from_config(config: dict, name: str) -> ModelShape:
    """A shape from a parsed `config.json` (top level, or its `text_config` for multimodal wrappers)."""
    if "hidden_size" not in config and isinstance(config.get("text_config"), dict):
        config = {**config["text_config"], "tie_word_embeddings": config.get("tie_word_embeddings", False)}
    moe = [key for key in _MOE_KEYS if config.get(key)]
    if moe:
        raise UserError(f"{name}: mixture-of-experts models ({', '.join(moe)}) are not covered by the memory planner")
    try:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        model_type = str(config.get("model_type", ""))
        attention_bias = bool(config.get("attention_bias", False))
        return ModelShape(
            name=name,
            hidden_size=hidden,
            intermediate_size=int(config["intermediate_size"]),
            num_hidden_layers=int(config["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            vocab_size=int(config["vocab_size"]),
            # Llama, Qwen2 and Mistral default to untied heads and may leave the key out of config.json.
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            max_position_embeddings=int(config.get("max_position_embeddings") or 0),
            model_type=model_type,
            qkv_bias=attention_bias or model_type in _QKV_BIAS_TYPES,
            o_bias=attention_bias,
            mlp_bias=bool(config.get("mlp_bias", False)),
            qk_norm=model_type in _QK_NORM_TYPES,
        )
    except KeyError as exc:
        raise UserError(f"{name}: config.json lacks {exc.args[0]!r}; cannot size the model") from exc
    except (TypeError, ValueError) as exc:
        raise UserError(f"{name}: config.json has a value that is not a number: {exc}") from exc


def read_config(path: Path, name: str) -> ModelShape:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    return from_config(data, name)


def bundled_shapes() -> list[str]:
    """Model ids with a shape file shipped in the package, e.g. 'Qwen/Qwen2.5-7B-Instruct'."""
    return sorted(path.stem.replace("--", "/", 1) for path in SHAPES_DIR.glob("*.json"))


def _bundled_path(model: str) -> Path | None:
    wanted = model.strip().lower()
    for path in SHAPES_DIR.glob("*.json"):
        if path.stem.replace("--", "/", 1).lower() == wanted:
            return path
    return None


def _cached_config(model: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    from deepicd.models import looks_like_hub_id

    if not looks_like_hub_id(model):
        return None
    found = try_to_load_from_cache(model, "config.json")  # offline: a path string only when the file is cached
    return Path(found) if isinstance(found, str) else None


def model_shape(model: str | Path) -> ModelShape:
    """The shape of `model`: a local folder, a hub id in the local cache, or one of the bundled shapes.

    Raises UserError naming the places that were tried when none of them has it.
    """
    text = str(model).strip()
    path = Path(text).expanduser()
    if path.is_file() and path.name == "config.json":
        return read_config(path, str(path.parent))
    if path.is_dir():
        if (path / "config.json").is_file():
            return read_config(path / "config.json", text)
        raise UserError(f"cannot size model {text!r}: the folder has no config.json")
    cached = _cached_config(text)
    if cached is not None:
        return read_config(cached, text)
    bundled = _bundled_path(text)
    if bundled is not None:
        return read_config(bundled, text)
    raise UserError(
        f"cannot size model {text!r}: it is not a local folder with config.json, its config.json is not in the "
        f"Hugging Face cache, and it is not a bundled shape ({', '.join(bundled_shapes())})"
    )
