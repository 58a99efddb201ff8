"""Loading causal LMs and their tokenizers: one path for the tiny test model and for real ones.

Every stage (GRPO, distillation, SFT, evaluation) loads models through here, so
the tiny CPU model exercises exactly the code that later loads Qwen2.5-7B or
Llama-3.1-8B. Three things go wrong often enough to be settled in one place:

- Downloads. MIMIC-IV work runs on machines that must not fetch anything
  unexpectedly, so loading is local-only by default: a folder on disk, or a hub
  id already in the Hugging Face cache. A missing folder is reported as such,
  instead of being sent to the hub as if it were a model id.
- Padding. Decoder-only models generate from the right end of the prompt, so
  batched generation needs left padding; training wants right padding so the
  labels line up with the text. Many chat models (Llama 3.1) ship without a pad
  token; we reuse the end-of-sequence token rather than growing the vocabulary,
  which would change the model that a server or trainer later loads.
- Precision. "auto" means bfloat16 on a GPU that supports it and float32
  elsewhere: bfloat16 matmuls on CPU are slow and the tiny model is tiny anyway.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from deepicd.errors import UserError

if TYPE_CHECKING:
    import torch

Purpose = Literal["generate", "train"]
DType = Literal["auto", "bfloat16", "float32"]

_PADDING_SIDE = {"generate": "left", "train": "right"}
# "org/name" or a bare legacy name ("gpt2"); the hub allows letters, digits, '-', '_' and '.'.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
# Any one of these marks a folder as holding that part; tokenizers come in several layouts.
_FILES = {
    "model": ("config.json",),
    "tokenizer": ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json"),
}


def looks_like_hub_id(text: str) -> bool:
    """True if `text` could name a Hugging Face hub repository rather than only a path."""
    return bool(_HUB_ID.fullmatch(text)) and ".." not in text and not text.endswith((".", "-"))


def resolve(path_or_id: str | Path, *, local_only: bool = True, what: Literal["model", "tokenizer"] = "model") -> str:
    """The string to hand to `from_pretrained`: an absolute folder, or a hub id.

    Raises UserError when the folder does not exist, lacks the files of `what`,
    or (with `local_only`) names a hub model that is not in the local cache.
    """
    text = str(path_or_id).strip()
    if not text:
        raise UserError("no model given: pass a model folder or a Hugging Face model id")
    files = _FILES[what]
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"model path {text!r} is a file; pass the folder that holds config.json")
        if not any((path / name).is_file() for name in files):
            raise UserError(f"{text!r} is not a Hugging Face {what} folder: it has no {' or '.join(files)}")
        return str(path.resolve())
    if not looks_like_hub_id(text):
        raise UserError(f"model folder not found: {text!r}")
    if local_only and not _in_hub_cache(text, files):
        raise UserError(
            f"model {text!r} is neither a folder here nor in the local Hugging Face cache, and downloads "
            "are off; download it beforehand or give the path of a local copy"
        )
    return text


def _in_hub_cache(repo_id: str, files: tuple[str, ...]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    # The lookup returns a path string only for a file present in the cache; it never goes online.
    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in files)


def ensure_pad_token(tokenizer) -> None:
    """Give the tokenizer a pad token if it has none, reusing end-of-sequence (no new embeddings)."""
    if tokenizer.pad_token is not None:
        return
    if tokenizer.eos_token is None:
        raise UserError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an end-of-sequence token")
    tokenizer.pad_token = tokenizer.eos_token


def load_tokenizer(path_or_id: str | Path, *, purpose: Purpose = "generate", local_only: bool = True):
    """Load a tokenizer with a pad token, padded on the left for generation and on the right for training."""
    from transformers import AutoTokenizer

    if purpose not in _PADDING_SIDE:
        raise UserError(f"unknown tokenizer purpose {purpose!r}; expected one of {sorted(_PADDING_SIDE)}")
    source = resolve(path_or_id, local_only=local_only, what="tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the tokenizer of {str(path_or_id)!r}: {exc}") from exc
    ensure_pad_token(tokenizer)
    tokenizer.padding_side = _PADDING_SIDE[purpose]
    return tokenizer


def resolve_device(device: str = "auto"):
    """A torch device from "auto", "cpu", "cuda" or "cuda:N"; a GPU that is not there is an error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but no CUDA GPU is available")
    return resolved


def resolve_dtype(dtype: DType, device: "torch.device") -> "torch.dtype":
    """The torch dtype for a name; "auto" is bfloat16 on a bf16-capable GPU, float32 otherwise."""
    import torch

    if dtype == "auto":
        on_bf16_gpu = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if on_bf16_gpu else torch.float32
    names = {"bfloat16": torch.bfloat16, "float32": torch.float32}
    if dtype not in names:
        raise UserError(f"unknown dtype {dtype!r}; expected auto, bfloat16 or float32")
    return names[dtype]


def load_causal_lm(
    path_or_id: str | Path,
    *,
    dtype: DType = "auto",
    device: str = "auto",
    local_only: bool = True,
):
    """Load a causal LM onto `device` in `dtype`, in eval mode, with a pad id for generation."""
    from transformers import AutoModelForCausalLM

    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    source = resolve(path_or_id, local_only=local_only)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the model {str(path_or_id)!r}: {exc}") from exc
    model.to(target)
    model.eval()
    generation = model.generation_config
    if generation.pad_token_id is None:
        eos = generation.eos_token_id if generation.eos_token_id is not None else model.config.eos_token_id
        generation.pad_token_id = eos[0] if isinstance(eos, (list, tuple)) else eos
    return model


def load(
    path_or_id: str | Path,
    *,
    purpose: Purpose = "generate",
    dtype: DType = "auto",
    device: str = "auto",
    local_only: bool = True,
):
    """Model and tokenizer together, with the model's pad id taken from the tokenizer when it has none."""
    tokenizer = load_tokenizer(path_or_id, purpose=purpose, local_only=local_only)
    model = load_causal_lm(path_or_id, dtype=dtype, device=device, local_only=local_only)
    if model.config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
