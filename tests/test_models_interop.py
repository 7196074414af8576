"""A prepared model folder reads the same in transformers 4.x-era tools: config.json carries
rope_theta / rope_scaling (4.x) beside rope_parameters (5.x), and a tokenizer class both
know. transformers 4.x itself is not installed here, so the 4.x read is simulated: a
config built from the fields a 4.x reader uses, without rope_parameters."""
from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from conftest import TINY_SOURCE
from edit_retention.models import LEGACY_TOKENIZER_CLASS, load_model, prepare_model, write_interop_fields

LEGACY_KEYS = ("rope_parameters", "dtype")   # what a 4.x reader does not look at


def _logits(model, tok):
    ids = tok(["The capital of France is Paris, and the capital of Japan is"], return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_prepared_folder_has_equal_4x_fields_and_a_4x_read_gives_our_log_probs(tmp_path):
    source = {**TINY_SOURCE, "config": {**TINY_SOURCE["config"], "rope_theta": 100000.0}}
    folder = tmp_path / "base"
    prepare_model(source, folder)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["rope_parameters"]["rope_theta"] == cfg["rope_theta"] == 100000.0
    assert cfg["rope_scaling"] is None and cfg["torch_dtype"] == cfg["dtype"] == "float32"
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == LEGACY_TOKENIZER_CLASS

    model, tok = load_model(folder)
    ours = _logits(model, tok)
    legacy = {k: v for k, v in cfg.items() if k not in LEGACY_KEYS}
    as_4x = AutoModelForCausalLM.from_pretrained(folder, config=LlamaConfig(**legacy), dtype=torch.float32).eval()
    assert torch.equal(_logits(as_4x, tok), ours)
    # what a 4.x reader made of the folder before: no rope_theta, so its default 10000
    before = {k: v for k, v in legacy.items() if k not in ("rope_theta", "rope_scaling")}
    as_4x_before = AutoModelForCausalLM.from_pretrained(folder, config=LlamaConfig(**before), dtype=torch.float32)
    assert as_4x_before.config.rope_parameters["rope_theta"] == 10000.0
    assert not torch.allclose(_logits(as_4x_before.eval(), tok), ours, atol=1e-4)


def test_scaled_rope_is_written_for_4x(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "dtype": "bfloat16",
        "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 500000.0}}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))
    write_interop_fields(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["rope_theta"] == 500000.0 and cfg["torch_dtype"] == "bfloat16"
    assert cfg["rope_scaling"] == {"rope_type": "linear", "type": "linear", "factor": 2.0}
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "GPT2Tokenizer"
