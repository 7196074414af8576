"""What the benchmark scripts share: peak memory, and running one measurement per fresh
subprocess (so that each peak is its own) with a table of the rows at the end."""
from __future__ import annotations

import json
import resource
import subprocess
import sys


def rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_rows(script: str, runs: dict[str, list[str]], cols: list[str]) -> list[dict]:
    """Run ``script`` once per entry of ``runs`` (label -> its arguments); each run prints
    its row as the last line of JSON. Prints every row, then a table of ``cols``."""
    rows = []
    for label, args in runs.items():
        r = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{label} failed:\n{r.stderr[-3000:]}")
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("\n" + " | ".join(cols))
    for row in rows:
        print(" | ".join(str(row[c]) for c in cols))
    return rows


# Architectures a benchmark can build with random weights (--model random:NAME): the same
# shapes, so the same cost per token, without fetching or carrying any weights. The
# tokenizer comes from a prepared model folder (--model random:NAME@DIR; default the
# default study's). Edit success and scores mean nothing on random weights; speed and
# memory do.
RANDOM_ARCHS = {
    "smollm2-135m": ("llama", {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                               "num_attention_heads": 9, "num_key_value_heads": 3, "tie_word_embeddings": True}),
    "gpt2-xl": ("gpt2", {"n_embd": 1600, "n_layer": 48, "n_head": 25, "n_positions": 1024}),
    "llama3-8b": ("llama", {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                            "num_attention_heads": 32, "num_key_value_heads": 8, "rope_theta": 500000.0}),
}
DEFAULT_TOKENIZER = "data/models/smollm2-135m/base"


def load(spec: str, device: str = "cpu"):
    """(model, tokenizer) from a prepared model folder, or random weights of ``random:NAME[@DIR]``."""
    from edit_retention.models import load_model
    if not spec.startswith("random:"):
        return load_model(spec, device=device)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    name, _, tok_dir = spec[len("random:"):].partition("@")
    if name not in RANDOM_ARCHS:
        raise SystemExit(f"--model random:{name}: unknown architecture (known: {', '.join(RANDOM_ARCHS)})")
    arch, cfg = RANDOM_ARCHS[name]
    tok = AutoTokenizer.from_pretrained(tok_dir or DEFAULT_TOKENIZER)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    config = AutoConfig.for_model(arch, vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **cfg)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval(), tok


def add_phase_args(ap) -> None:
    """The options that name one scored phase's items: model, selected facts, paraphrases."""
    ap.add_argument("--model", required=True, help="prepared model folder, or random:NAME[@tokenizer dir]")
    ap.add_argument("--select", required=True, help="folder with edit.jsonl and control.jsonl")
    ap.add_argument("--paraphrases", required=True)


def phase_items(a) -> tuple[list[dict], list[dict]]:
    """(the edited records, every item one phase scores) of ``add_phase_args``' options."""
    from edit_retention.evaluate import build_items
    from edit_retention.io import read_jsonl
    from edit_retention.records import read_records

    edited = read_records(f"{a.select}/edit.jsonl")
    para = {p["case_id"]: p for p in read_jsonl(a.paraphrases)}
    return edited, build_items(edited, read_records(f"{a.select}/control.jsonl"), para)
