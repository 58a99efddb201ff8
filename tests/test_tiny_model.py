"""The tiny model builder and the shared loading code: what every CPU test and the demo rely on."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from deepicd import models, tiny
from deepicd.cli import app
from deepicd.errors import ConfigError, UserError
from deepicd.manifest import KEYS
from deepicd.config import available_presets
from deepicd.prompts import task

NOTE = "CHIEF COMPLAINT: back pain radiating to the left leg\n\nMEDICAL HISTORY: lumbar disc herniation"
# A made-up word: in the built-in corpus it does not exist, so it splits into several pieces.
RARE_WORD = "zorbluxine"


@pytest.fixture(scope="module")
def loaded(tiny_model):
    return models.load(tiny_model, device="cpu")


def test_folder_is_a_standard_hugging_face_model(tiny_model):
    names = {p.name for p in tiny_model.iterdir()}
    expected = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}
    assert expected <= names
    assert not [p for p in tiny_model.parent.iterdir() if p.name.startswith(".")], "staging folder left behind"
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["tie_word_embeddings"] is True
    tokenizer_config = json.loads((tiny_model / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tokenizer_config["chat_template"]
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    vocab = json.loads((tiny_model / "tokenizer.json").read_text())["model"]["vocab"]
    generation = json.loads((tiny_model / "generation_config.json").read_text())
    assert generation["eos_token_id"][0] == vocab["<|im_end|>"]
    assert generation["pad_token_id"] == vocab["<|endoftext|>"]
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 42 and manifest["result"]["corpus"][0]["name"] == "built-in"


def test_loads_back_with_default_sizes(tiny_model, loaded):
    model, tokenizer = loaded
    defaults = tiny.TinyModelConfig()
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.hidden_size == defaults.hidden_size
    assert model.config.num_hidden_layers == defaults.num_hidden_layers
    assert len(tokenizer) == model.config.vocab_size == defaults.vocab_size
    assert model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    assert next(model.parameters()).dtype == torch.float32  # "auto" on CPU
    assert not model.training
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.padding_side == "left"
    assert models.load_tokenizer(tiny_model, purpose="train").padding_side == "right"


@pytest.mark.parametrize("tag", tiny.TAG_TOKENS)
def test_tags_are_single_tokens_kept_by_skip_special_tokens(loaded, tag):
    _, tokenizer = loaded
    ids = tokenizer.encode(tag, add_special_tokens=False)
    assert len(ids) == 1
    assert tag not in tokenizer.all_special_tokens
    text = "<think>\nBack pain with radiculopathy.\n</think>\n<diagnosis>M5116</diagnosis>"
    ids = tokenizer.encode(text + "<|im_end|><|endoftext|>", add_special_tokens=False)
    assert ids.count(tokenizer.convert_tokens_to_ids(tag)) == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.decode(ids, skip_special_tokens=False) == text + "<|im_end|><|endoftext|>"


def test_chat_template_ends_with_the_prefill(loaded):
    _, tokenizer = loaded
    prompt = task.render(tokenizer, NOTE)
    assert prompt.startswith("<|im_start|>system\n" + task.SYSTEM + "<|im_end|>\n<|im_start|>user\n")
    assert prompt.endswith("<|im_start|>assistant\n<think>")
    ids = tokenizer(prompt).input_ids
    assert tokenizer.convert_ids_to_tokens(ids[-4:-2]) == ["<|im_start|>", "assistant"]
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<think>")
    no_prompt = tokenizer.apply_chat_template(task.messages(NOTE), tokenize=False)
    assert no_prompt.endswith("<|im_end|>\n")
    # OpenAI-style content parts, as OpenAI-compatible servers pass them, render the same.
    parts = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in task.messages(NOTE)]
    assert tokenizer.apply_chat_template(parts, tokenize=False, add_generation_prompt=True) + task.PREFILL == prompt


@pytest.mark.parametrize("code", ["M5116", "C4A0", "T8189XA", "I214", "O9A211"])
def test_codes_split_into_short_pieces_and_decode_exactly(loaded, code):
    _, tokenizer = loaded
    pieces = tokenizer.tokenize(code)
    assert "".join(pieces) == code
    assert all(len(piece) <= 2 for piece in pieces)
    assert [p for p in pieces if any(c.isdigit() for c in p)] == [c for c in code if c.isdigit()]
    ids = tokenizer.encode(f"<diagnosis>{code}</diagnosis>", add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == f"<diagnosis>{code}</diagnosis>"
    assert tokenizer.decode(tokenizer.encode(code, add_special_tokens=False)) == code


def test_prompt_words_are_whole_tokens(loaded):
    _, tokenizer = loaded
    for word in ["clinical", "diagnosis", "admission", "discharge", "Illness"]:
        assert len(tokenizer.tokenize(" " + word)) == 1, word


def test_generate_with_left_padding_matches_unpadded(loaded):
    model, tokenizer = loaded
    prompts = [task.render(tokenizer, NOTE), task.render(tokenizer, "CHIEF COMPLAINT: fever")]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    assert (batch.attention_mask[1] == 0).any() and batch.attention_mask[1, -1] == 1
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=4, do_sample=False)
        alone = model.generate(**tokenizer(prompts[1:], return_tensors="pt"), max_new_tokens=4, do_sample=False)
    width = batch.input_ids.shape[1]
    assert out.shape[0] == 2 and 1 <= out.shape[1] - width <= 4
    # Left padding done right: the padded row continues exactly as the same prompt alone does.
    new_alone = alone[0, len(tokenizer(prompts[1]).input_ids):].tolist()
    assert out[1, width : width + len(new_alone)].tolist() == new_alone
    assert isinstance(tokenizer.decode(out[0, width:]), str)


def test_same_seed_same_files_other_seed_other_weights(tiny_model, loaded, tmp_path):
    again = tmp_path / "again"
    tiny.run(replace(tiny.load_tiny_config(), out=str(again)))
    for name in ["model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json"]:
        assert (again / name).read_bytes() == (tiny_model / name).read_bytes(), name
    # The manifests differ only in when and how the build ran; the outputs' checksums agree.
    recorded = [json.loads((folder / "manifest.json").read_text()) for folder in (again, tiny_model)]
    for entry in recorded:
        assert tuple(entry) == KEYS and entry["outputs"]["model.safetensors"]["sha256"]
        del entry["created"], entry["finished"], entry["argv"], entry["config"]["out"]
    assert recorded[0] == recorded[1]
    model, tokenizer = loaded
    other = tiny.init_model(tiny.load_tiny_config(overrides=["seed=7"]), tokenizer)
    first = model.get_input_embeddings().weight
    assert first.shape == other.get_input_embeddings().weight.shape
    assert not torch.equal(first, other.get_input_embeddings().weight)


def test_a_rebuild_is_a_no_op_and_other_settings_need_overwrite(tiny_model, tmp_path):
    before = (tiny_model / "model.safetensors").stat().st_mtime_ns
    same = tiny.run(replace(tiny.load_tiny_config(), out=str(tiny_model)))
    assert same.already_done and same.parameters > 0 and same.corpus[0].name == "built-in"
    assert (tiny_model / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(UserError, match=r"other settings \(seed\).*--overwrite"):
        tiny.run(replace(tiny.load_tiny_config(overrides=["seed=7"]), out=str(tiny_model)))
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="files without a deepicd manifest"):
        tiny.run(replace(tiny.load_tiny_config(), out=str(stray)))
    with pytest.raises(UserError, match="holds the input corpus-0"):
        tiny.run(replace(tiny.load_tiny_config(), out=str(tmp_path), corpus=[str(stray / "notes.txt")], overwrite=True))


def test_corpus_readers(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("Chief Complaint:\nfever\n")
    jsonl = tmp_path / "notes.jsonl"
    jsonl.write_text(json.dumps({"text": "a"}) + "\n\n" + json.dumps({"text": "b"}) + "\n")
    parquet = tmp_path / "train.parquet"
    pd.DataFrame({"hadm_id": [1, 2, 3], "text": ["x", None, "y"]}).to_parquet(parquet)
    assert list(tiny.read_corpus_file(text)) == ["Chief Complaint:\nfever\n"]
    assert list(tiny.read_corpus_file(jsonl)) == ["a", "b"]
    assert list(tiny.read_corpus_file(parquet)) == ["x", "y"]
    documents, sources = tiny.collect_corpus([jsonl, parquet], max_chars=3)
    assert documents[-3:] == ["a", "b", "x"]
    assert [(s.documents, s.chars) for s in sources[1:]] == [(2, 2), (1, 1)]


def test_corpus_errors_name_the_file_and_field(tmp_path):
    no_text = tmp_path / "rows.parquet"
    pd.DataFrame({"note": ["x"]}).to_parquet(no_text)
    with pytest.raises(UserError, match=r"rows\.parquet.*no column 'text'.*note"):
        list(tiny.read_corpus_file(no_text))
    broken = tmp_path / "rows.jsonl"
    broken.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(UserError, match=r"rows\.jsonl, line 2"):
        list(tiny.read_corpus_file(broken))
    wrong_field = tmp_path / "other.jsonl"
    wrong_field.write_text('{"note": "x"}\n')
    with pytest.raises(UserError, match="no string field 'text'"):
        list(tiny.read_corpus_file(wrong_field))
    table = tmp_path / "a.csv"
    table.write_text("text\nx\n")
    with pytest.raises(UserError, match=r"a\.csv: unsupported type \.csv"):
        list(tiny.read_corpus_file(table))
    with pytest.raises(UserError, match="not found"):
        list(tiny.read_corpus_file(tmp_path / "missing.txt"))


@pytest.mark.parametrize("name", available_presets("tiny"))
def test_every_shipped_preset_is_valid(name):
    assert tiny.load_tiny_config(name).vocab_size > 0  # loading runs the config's own checks


@pytest.mark.parametrize(
    "override, key",
    [
        ("hidden_size=100", "hidden_size"),
        ("num_key_value_heads=3", "num_key_value_heads"),
        ("vocab_size=100", "vocab_size"),
        ("num_hidden_layers=0", "num_hidden_layers"),
        ("hidden_size=big", "hidden_size"),
    ],
)
def test_bad_config_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        tiny.load_tiny_config("default", [override])


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="model folder not found"):
        models.load_causal_lm(tmp_path / "nope" / "model")
    with pytest.raises(UserError, match="model folder not found"):
        models.load_tokenizer("./no-such-model/")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no config.json"):
        models.load_causal_lm(empty)
    with pytest.raises(UserError, match="no tokenizer.json or"):
        models.load_tokenizer(empty)


def test_uncached_hub_id_is_refused_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UserError, match="downloads are off"):
        models.load_causal_lm("Qwen/Qwen2.5-7B-Instruct")
    assert models.looks_like_hub_id("meta-llama/Llama-3.1-8B-Instruct")
    assert not models.looks_like_hub_id("/abs/path/model") and not models.looks_like_hub_id("../model")


def test_dtype_and_device_choices(tiny_model):
    model = models.load_causal_lm(tiny_model, dtype="bfloat16", device="cpu")
    assert next(model.parameters()).dtype == torch.bfloat16
    with pytest.raises(UserError, match="dtype"):
        models.load_causal_lm(tiny_model, dtype="float8", device="cpu")
    with pytest.raises(UserError, match="device"):
        models.load_causal_lm(tiny_model, device="tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            models.load_causal_lm(tiny_model, device="cuda")


def test_missing_pad_token_reuses_eos(tiny_model):
    tokenizer = models.load_tokenizer(tiny_model)
    tokenizer.pad_token = None
    models.ensure_pad_token(tokenizer)
    assert tokenizer.pad_token == "<|im_end|>"


def test_cli_help_lists_the_options():
    result = CliRunner().invoke(app, ["tiny-model", "--help"])
    assert result.exit_code == 0
    for option in ["--out", "--corpus", "--config", "--overwrite"]:
        assert option in result.output


def test_cli_rejects_an_unknown_override_key(tmp_path):
    result = CliRunner().invoke(app, ["tiny-model", "--out", str(tmp_path / "m"), "hidden=64"])
    assert result.exit_code == 2
    assert "hidden" in result.output
    assert not (tmp_path / "m").exists()


def test_cli_builds_with_overrides_and_a_corpus(tmp_path, loaded):
    notes = tmp_path / "train.parquet"
    # Frequent enough in the added notes to earn whole-word merges even in a 2k vocabulary.
    pd.DataFrame({"text": [f"PRESENT ILLNESS: {RARE_WORD} given." * 10 for _ in range(500)]}).to_parquet(notes)
    extra = tmp_path / "extra.txt"
    extra.write_text(f" {RARE_WORD}" * 1000)
    out = tmp_path / "custom"
    result = CliRunner().invoke(
        app,
        ["tiny-model", "--out", str(out), "--corpus", str(notes), "--corpus", str(extra),
         "vocab_size=2048", "num_hidden_layers=1", "hidden_size=64", "intermediate_size=128"],
    )
    assert result.exit_code == 0, result.output
    assert "parameters" in result.output
    model, tokenizer = models.load(out, device="cpu")
    assert model.config.num_hidden_layers == 1 and len(tokenizer) == 2048
    assert len(tokenizer.tokenize(" " + RARE_WORD)) == 1
    assert len(loaded[1].tokenize(" " + RARE_WORD)) > 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert [Path(s["name"]).name for s in manifest["result"]["corpus"][1:]] == ["train.parquet", "extra.txt"]
    assert manifest["result"]["corpus"][1]["documents"] == 500
