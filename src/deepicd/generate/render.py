"""Turning a request into the exact tokens a model continues, identically for every backend.

The prompt is `chat_template(messages, add_generation_prompt=True) + prefill`,
rendered to text and then tokenized *without* adding special tokens: the chat
template already wrote the beginning-of-sequence token where the model expects
one, and tokenizing with the defaults would add a second (Llama 3.1 does). A
server that tokenizes text itself cannot be told not to add it, so for servers
we drop the template's leading BOS from the text instead.

Generation stops at any end token the model, its generation config or its chat
format knows: `<|im_end|>` ends a ChatML turn even where a config lists only
`<|endoftext|>`.
"""

from __future__ import annotations

from deepicd.generate.base import GenerationRequest

TURN_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>")


def prompt_text(tokenizer, request: GenerationRequest) -> str:
    """The text the model continues: the chat template with the generation prompt, then the prefill."""
    rendered = tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
    return rendered + request.prefill


def prompt_ids(tokenizer, request: GenerationRequest) -> list[int]:
    """Token ids of `prompt_text`, with no special tokens added on top of the template's own."""
    return list(tokenizer(prompt_text(tokenizer, request), add_special_tokens=False)["input_ids"])


def server_prompt_text(tokenizer, request: GenerationRequest) -> str:
    """`prompt_text` for a server that tokenizes it with special tokens: minus a BOS it would add again."""
    text = prompt_text(tokenizer, request)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and _adds_bos(tokenizer):
        return text[len(bos):]
    return text


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def stop_token_ids(tokenizer, generation_eos: int | list[int] | None = None) -> list[int]:
    """Every id that ends a completion: the model's configured EOS ids, the tokenizer's EOS, turn-end tokens."""
    ids: list[int] = []
    if isinstance(generation_eos, int):
        ids.append(generation_eos)
    elif generation_eos:
        ids.extend(int(i) for i in generation_eos)
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    ids.extend(vocab[token] for token in TURN_END_TOKENS if token in vocab and _is_special(tokenizer, token))
    return sorted(set(ids))


def _is_special(tokenizer, token: str) -> bool:
    # `<|endoftext|>` is an ordinary word in some vocabularies; only stop on it where it is a special token.
    return token in tokenizer.all_special_tokens or token in getattr(tokenizer, "added_tokens_encoder", {})
