"""Fixtures for the generation backends: an untied variant of the shared tiny model and a real server on it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from deepicd import serving
from deepicd.generate import GenerationRequest
from deepicd.prompts import task

NOTES = (
    "CHIEF COMPLAINT: chest pain",
    "CHIEF COMPLAINT: fever and cough\n\nPRESENT ILLNESS: three days of productive cough, fever 39 C.",
    "CHIEF COMPLAINT: fall\n\nPRESENT ILLNESS: tripped at home, hip pain, unable to bear weight.\n\n"
    "MEDICAL HISTORY: osteoporosis, hypertension, atrial fibrillation on warfarin.",
)


@pytest.fixture(scope="session")
def untied_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with a random output head of its own, saved as a model folder.

    With tied embeddings the random tiny model greedily repeats its last token
    whatever came before, so comparing two greedy runs would prove little; with
    an untied head every greedy continuation depends on the whole prompt (a
    padding or prompt-rendering mistake changes it).
    """
    import torch

    from deepicd.models import load

    model, tokenizer = load(tiny_model, device="cpu")
    weights = torch.randn(model.lm_head.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.02
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(weights)
    folder = tmp_path_factory.mktemp("generate-untied") / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model):
    from deepicd.models import load_tokenizer

    return load_tokenizer(tiny_model, purpose="generate")


@pytest.fixture()
def task_requests() -> list[GenerationRequest]:
    """Three task prompts of different lengths, keyed like admissions.

    The note is repeated at the end of the user turn: a random tiny model's greedy continuation depends
    mostly on the last tokens, and the tests need three prompts whose continuations differ (so that a
    batch that mixed up its rows would be caught), which the shared task instructions alone would hide.
    """
    requests = []
    for i, note in enumerate(NOTES):
        messages = task.messages(note)
        messages[-1] = {**messages[-1], "content": messages[-1]["content"] + "\n\n" + note}
        requests.append(GenerationRequest(key=f"hadm-{i}", messages=messages))
    return requests


@pytest.fixture(scope="session")
def transformers_server(request, tmp_path_factory):
    """Base URL of a real `transformers serve` pinned to `untied_model` on loopback; always stopped afterwards."""
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("transformers serve needs fastapi and uvicorn (pip install 'deepicd[serve]')")
    if not serving.transformers_cli().exists():
        pytest.skip(f"no 'transformers' CLI beside {sys.executable}")
    model = request.getfixturevalue("untied_model")  # only once it is known the server can run
    workdir = tmp_path_factory.mktemp("generate-serve")
    with serving.transformers_server(workdir, model=model, startup_timeout_s=120) as url:
        yield url
