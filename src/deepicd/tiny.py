"""Build a tiny random-init Qwen2-architecture chat model, entirely offline.

Every CPU test and the demo need a model that trains and generates in seconds,
yet goes through the same `AutoTokenizer`/`AutoModelForCausalLM` loading,
chat template and generation config as a real Qwen or Llama checkpoint. No such
model may be downloaded at run time, so we make one: a byte-level BPE tokenizer
trained here on text the project already holds (the task prompt, ICD-10-CM
descriptions and tabular text, clinical section headers, plus any notes the user
adds), and a Qwen2 model with seeded random weights, saved as a standard Hugging
Face folder.

Tokenizer choices that matter for the task:
- digits are split one by one and never merged with letters, so any ICD-10-CM
  code ("M5116", "C4A0") is a short sequence of pieces a model can compose;
- `<think>`, `</think>`, `<diagnosis>`, `</diagnosis>` are single tokens that are
  *not* special, so decoding with `skip_special_tokens=True` keeps them (the
  reward parser needs them) while dropping `<|im_end|>` and friends;
- the chat template is ChatML, like Qwen's, and `<|im_end|>` ends a turn.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from deepicd.errors import ConfigError, UserError
from deepicd import manifest
from deepicd.manifest import staged_directory

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TAG_TOKENS = ("<think>", "</think>", "<diagnosis>", "</diagnosis>")
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# ChatML, as Qwen models use it. Content may be a string or a list of OpenAI-style
# parts (what OpenAI-compatible servers pass on); only text parts are rendered.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Discharge-summary headers (MIMIC-IV-Note) and the admission-note sections built from them.
DISCHARGE_HEADERS = (
    "Name:", "Unit No:", "Admission Date:", "Discharge Date:", "Date of Birth:", "Sex:", "Service:",
    "Allergies:", "Attending:", "Chief Complaint:", "Major Surgical or Invasive Procedure:",
    "History of Present Illness:", "Past Medical History:", "Social History:", "Family History:",
    "Physical Exam:", "Pertinent Results:", "Brief Hospital Course:", "Medications on Admission:",
    "Discharge Medications:", "Discharge Disposition:", "Discharge Diagnosis:", "Discharge Condition:",
    "Discharge Instructions:", "Followup Instructions:",
)
ADMISSION_SECTIONS = (
    "CHIEF COMPLAINT", "PRESENT ILLNESS", "MEDICAL HISTORY", "MEDICATION ON ADMISSION", "ALLERGIES",
    "PHYSICAL EXAM", "FAMILY HISTORY", "SOCIAL HISTORY",
)
# How often the fixed texts are repeated, so their words become whole tokens.
_PROMPT_REPEATS = 200
_HEADER_REPEATS = 100
TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
TEXT_COLUMN = "text"


@dataclass
class TinyModelConfig:
    """Where the tiny model goes, its size and seed; presets live in `configs/tiny/*.yaml`."""

    out: str = ""  # folder to write the model into (--out)
    corpus: list[str] = field(default_factory=list)  # extra tokenizer text: .txt/.md, .jsonl/.parquet 'text' (--corpus)
    overwrite: bool = False  # replace what OUT holds when it is not this very model (--overwrite)
    vocab_size: int = 4096  # total, including the special tokens and the answer tags
    hidden_size: int = 128  # width of the residual stream
    num_hidden_layers: int = 2  # transformer blocks
    num_attention_heads: int = 4  # query heads per block
    num_key_value_heads: int = 2  # key/value heads (grouped-query attention, as in Qwen2.5)
    intermediate_size: int = 384  # width of the MLP
    max_position_embeddings: int = 2048  # longest sequence, prompt and completion together
    rope_theta: float = 10000.0  # base of the rotary position embedding
    initializer_range: float = 0.02  # standard deviation of the random initial weights
    seed: int = 42  # same seed and corpus: byte-identical weights and tokenizer
    min_frequency: int = 2  # a BPE merge must occur this often in the corpus to enter the vocabulary
    corpus_max_chars: int = 20_000_000  # cap on the text read from --corpus files

    def __post_init__(self) -> None:
        _check(self)


@dataclass
class CorpusSource:
    """Where part of the tokenizer's training text came from, for the manifest (whose `inputs` hold the checksums)."""

    name: str
    documents: int
    chars: int


@dataclass
class BuildResult:
    """What `build` made: the folder and the figures worth printing."""

    path: Path
    parameters: int
    vocab_size: int
    corpus: list[CorpusSource] = field(default_factory=list)
    seconds: float = 0.0
    already_done: bool = False  # OUT held this very model; nothing was built


def _check(config: TinyModelConfig) -> None:
    """Reject sizes the architecture cannot take, naming the key at fault (run when the config is built)."""
    positive = (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "intermediate_size", "max_position_embeddings", "min_frequency", "corpus_max_chars",
    )
    for key in positive:
        if getattr(config, key) <= 0:
            raise ConfigError(f"invalid tiny config at key '{key}': must be positive, got {getattr(config, key)}")
    minimum_vocab = 256 + len(SPECIAL_TOKENS) + len(TAG_TOKENS)
    if config.vocab_size < minimum_vocab:
        raise ConfigError(
            f"invalid tiny config at key 'vocab_size': at least {minimum_vocab} (256 bytes plus special "
            f"tokens and tags), got {config.vocab_size}"
        )
    if config.hidden_size % config.num_attention_heads:
        raise ConfigError(
            f"invalid tiny config at key 'hidden_size': {config.hidden_size} is not divisible by "
            f"num_attention_heads={config.num_attention_heads}"
        )
    if (config.hidden_size // config.num_attention_heads) % 2:
        raise ConfigError("invalid tiny config at key 'hidden_size': the head size must be even for rotary embeddings")
    if config.num_attention_heads % config.num_key_value_heads:
        raise ConfigError(
            f"invalid tiny config at key 'num_key_value_heads': {config.num_key_value_heads} does not divide "
            f"num_attention_heads={config.num_attention_heads}"
        )


def load_tiny_config(name_or_path: str | Path = "default", overrides: Sequence[str] = ()) -> TinyModelConfig:
    """A preset (or YAML file) with `key=value` overrides, checked when built."""
    from deepicd import config as configuration

    return configuration.load(TinyModelConfig, "tiny", name_or_path, overrides)


def default_corpus() -> Iterator[str]:
    """Text the project already holds: task prompt, section headers, ICD-10-CM codes and their text."""
    from deepicd import icd
    from deepicd.prompts import task

    headers_note = "\n \n".join(f"{header}\n___" for header in DISCHARGE_HEADERS)
    admission_note = "\n\n".join(f"{section}: ___" for section in ADMISSION_SECTIONS)
    for _ in range(_PROMPT_REPEATS):
        yield "system\nuser\nassistant"  # role names open every ChatML turn, right after <|im_start|>
        yield task.SYSTEM
        yield task.USER.format(note=admission_note)
    for _ in range(_HEADER_REPEATS):
        yield headers_note
        yield admission_note
    for code in icd.leaf_codes():
        yield f"{code} {icd.description(code)}"
    for category in icd.categories():
        yield icd.tabular_text(category)


def read_corpus_file(path: Path) -> Iterator[str]:
    """Documents of one corpus file: a whole text file, or the `text` field of JSONL/parquet rows."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise UserError(f"corpus file not found: {path}")
    if suffix in TEXT_SUFFIXES:
        yield path.read_text(encoding="utf-8", errors="replace")
    elif suffix in JSONL_SUFFIXES:
        yield from _read_jsonl(path)
    elif suffix in PARQUET_SUFFIXES:
        yield from _read_parquet(path)
    else:
        known = ", ".join(TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES)
        raise UserError(f"corpus file {path}: unsupported type {suffix or '(none)'}; use one of {known}")


def _read_jsonl(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"corpus file {path}, line {number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get(TEXT_COLUMN), str):
                raise UserError(f"corpus file {path}, line {number}: no string field {TEXT_COLUMN!r}")
            yield row[TEXT_COLUMN]


def _read_parquet(path: Path) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise UserError(f"corpus file {path}: cannot read it as parquet ({exc})") from exc
    columns = handle.schema_arrow.names
    if TEXT_COLUMN not in columns:
        raise UserError(f"corpus file {path}: no column {TEXT_COLUMN!r} (columns: {', '.join(columns)})")
    for batch in handle.iter_batches(columns=[TEXT_COLUMN], batch_size=1024):
        for value in batch.column(0).to_pylist():
            if value:
                yield value


def collect_corpus(
    files: Sequence[Path], max_chars: int, progress: bool = False
) -> tuple[list[str], list[CorpusSource]]:
    """The built-in corpus plus the user's files, in order, stopping after `max_chars` of file text."""
    from tqdm import tqdm

    documents = list(default_corpus())
    sources = [CorpusSource("built-in", len(documents), sum(map(len, documents)))]
    budget = max_chars
    for path in files:
        path = Path(path)
        count = chars = 0
        for text in tqdm(read_corpus_file(path), desc=f"reading {path.name}", unit=" docs", disable=not progress):
            if budget <= 0:
                break
            text = text[:budget]
            documents.append(text)
            budget -= len(text)
            count += 1
            chars += len(text)
        sources.append(CorpusSource(str(path), count, chars))
    return documents, sources


def train_tokenizer(documents: Iterable[str], config: TinyModelConfig):
    """A byte-level BPE tokenizer in Qwen2's format, with ChatML special tokens and the answer tags.

    transformers rebuilds every `qwen2` model's tokenizer as `Qwen2Tokenizer`, with
    its own normaliser and pre-tokenizer, from the vocabulary and merges alone. We
    therefore train with that very pipeline (taken from the installed class, not
    copied), so the saved tokenizer.json and what transformers loads always agree.
    Its pre-tokenizer isolates every digit and keeps letters apart from digits.
    """
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    reference = Qwen2Tokenizer().backend_tokenizer
    core = Tokenizer(models.BPE())
    core.normalizer = reference.normalizer
    core.pre_tokenizer = reference.pre_tokenizer
    core.decoder = reference.decoder
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size - len(TAG_TOKENS),
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # its bar writes blank lines to stdout when not on a terminal
    )
    core.train_from_iterator(documents, trainer=trainer)
    trained = json.loads(core.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=trained["vocab"],
        merges=[tuple(merge) for merge in trained["merges"]],
        unk_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS_TOKEN, PAD_TOKEN)],
        chat_template=CHAT_TEMPLATE,
        model_max_length=config.max_position_embeddings,
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in TAG_TOKENS])
    return tokenizer


def init_model(config: TinyModelConfig, tokenizer):
    """A Qwen2 causal LM with weights drawn from `config.seed`, leaving the caller's RNG untouched."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        initializer_range=config.initializer_range,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Qwen2ForCausalLM(model_config)
    # Stop on the end of a turn, and on end-of-text as Qwen checkpoints do.
    model.generation_config = GenerationConfig(eos_token_id=[eos_id, pad_id], pad_token_id=pad_id)
    return model


def run(config: TinyModelConfig, *, progress: bool = False) -> BuildResult:
    """Train the tokenizer, initialise the model and save both to OUT, which appears only when complete.

    An OUT that holds this very model (same config, same corpus files) is kept and its record returned;
    anything else there needs `overwrite` (see deepicd.run_folder).
    """
    from tqdm import tqdm

    from deepicd import run_folder
    from deepicd.prompts import task
    from deepicd.schema import require_given

    require_given(config, "tiny-model config", {"out": "--out"})
    out = Path(config.out)
    corpus = {f"corpus-{index}": Path(path) for index, path in enumerate(config.corpus)}
    run_folder.refuse_overlap([out], corpus)
    done = run_folder.previous_run(out, "tiny-model", asdict(config), corpus, overwrite=config.overwrite,
                                   ignore=("out", "corpus", "overwrite"))
    if done is not None:
        made = done["result"]
        return BuildResult(out, made["parameters"], made["vocab_size"],
                           [CorpusSource(**source) for source in made["corpus"]], already_done=True)
    started = time.perf_counter()
    steps = tqdm(total=4, desc="collecting corpus", unit="step", disable=not progress)
    documents, sources = collect_corpus([Path(f) for f in config.corpus], config.corpus_max_chars, progress)
    steps.update()
    steps.set_description("training tokenizer")
    tokenizer = train_tokenizer(documents, config)
    steps.update()
    steps.set_description("initialising model")
    model = init_model(config, tokenizer)
    parameters = sum(p.numel() for p in model.parameters())
    steps.update()
    steps.set_description("saving")

    try:
        with staged_directory(out) as staging:
            model.save_pretrained(staging)
            # The template inside tokenizer_config.json is read by every version of every loader.
            tokenizer.save_pretrained(staging, save_jinja_files=False)
            entry = manifest.record(
                "tiny-model", config=asdict(config), seed=config.seed, prompts={"task": task.VERSION},
                inputs=corpus,
                result={"architecture": "Qwen2ForCausalLM", "parameters": parameters, "vocab_size": len(tokenizer),
                        "corpus": [asdict(source) for source in sources]},
                packages=("deepicd", "torch", "transformers", "tokenizers"),
            )
            manifest.write(staging, entry, outputs=manifest.describe_outputs(staging))
        steps.update()
    finally:
        steps.close()
    return BuildResult(out, parameters, len(tokenizer), sources, time.perf_counter() - started)
