"""Issue 16 item 2: one pass over the corpus fills every layer's statistics file, and each
file is byte-for-byte what a pass for that layer alone writes (same texts, same order)."""
from __future__ import annotations

import torch

from edit_retention.cli import main
from edit_retention.io import write_jsonl
from edit_retention.stats import compute_mom2, layer_file, load_stats

TEXTS = ["The quick brown fox jumps over the lazy dog near the river bank.", "Paris is a city.", "",
         "Statistics of keys are computed over every real token, never padding.", "A clock. " * 9]


def test_several_layers_in_one_pass_equal_separate_passes(tiny_model):
    model, tok = tiny_model
    both = compute_mom2(model, tok, TEXTS, [3, 1], max_len=16, batch_size=2, progress=False)
    for layer in (1, 3):
        alone = compute_mom2(model, tok, TEXTS, [layer], max_len=16, batch_size=2, progress=False)
        assert torch.equal(both[layer], alone[layer]), layer
        assert (both.tokens, both.texts) == (alone.tokens, alone.texts)


def _stats_cli(model_dir, corpus, out_dir, *layers) -> int:
    return main(["stats", "--model", str(model_dir), "--corpus", str(corpus), "--layers", *map(str, layers),
                 "--n-samples", "4", "--max-len", "16", "--batch-size", "2", "--out-dir", str(out_dir)])


def test_cli_writes_one_file_per_layer_identical_to_single_layer_runs(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, [{"text": t} for t in TEXTS + ["Beyond --n-samples: never read."]])
    assert _stats_cli(tiny_model_dir, corpus, tmp_path / "all", 2, 0, 3, 2) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [
        "MANIFEST.sha256", "layer0.safetensors", "layer2.safetensors", "layer3.safetensors"]
    for layer in (0, 2, 3):
        assert _stats_cli(tiny_model_dir, corpus, tmp_path / f"one{layer}", layer) == 0
        assert sorted(p.name for p in (tmp_path / f"one{layer}").iterdir()) == [
            "MANIFEST.sha256", f"layer{layer}.safetensors"]
        one, many = layer_file(tmp_path / f"one{layer}", layer), layer_file(tmp_path / "all", layer)
        assert one.read_bytes() == many.read_bytes(), layer
        stats, meta = load_stats(many)
        assert sorted(stats) == [layer] and meta["layer"] == layer and meta["layers"] == [layer]
        assert meta["n_samples"] == 4 and meta["texts"] == 3 and stats.tokens > 0


def test_cli_names_the_bad_layer(tiny_model_dir, tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, [{"text": "Some text."}])
    assert _stats_cli(tiny_model_dir, corpus, tmp_path / "s", 1, 7) == 2
    assert "error: stats --layers: layer 7 is outside the model (it has layers 0..3)" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()      # checked before the pass: no file written
