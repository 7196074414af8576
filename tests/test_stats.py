"""Second-moment statistics: brute-force agreement, symmetry/PSD, file round trip."""
from __future__ import annotations

import pytest
import torch

from edit_retention.io import InputError
from edit_retention.models import arch_of, get_module
from edit_retention.stats import Mom2, compute_mom2, load_stats, save_stats

TEXTS = ["The quick brown fox jumps over the lazy dog near the river bank.",
         "Paris is a city.", "", "Statistics of keys are computed over every real token, never padding."]


def brute_force(model, tok, texts, layer, max_len):
    """E[k k^T] from one unpadded forward per text."""
    keys = []
    mod = get_module(model, arch_of(model).mlp_out.format(layer))
    h = mod.register_forward_pre_hook(lambda m, i: keys.append(i[0][0].double()))
    with torch.no_grad():
        for t in texts:
            if t:
                model(**tok(t, return_tensors="pt", truncation=True, max_length=max_len))
    h.remove()
    K = torch.cat(keys)
    return K.T @ K / len(K), len(K)


def test_mom2_matches_brute_force_and_is_psd(tiny_model):
    model, tok = tiny_model
    stats = compute_mom2(model, tok, TEXTS, [2, 1], max_len=12, batch_size=2, progress=False)
    assert isinstance(stats, Mom2) and sorted(stats) == [1, 2]
    for layer in (1, 2):
        ref, n = brute_force(model, tok, TEXTS, layer, 12)
        C = stats[layer]
        assert C.dtype == torch.float64 and stats.tokens == n and stats.texts == 3
        torch.testing.assert_close(C, ref, rtol=1e-5, atol=1e-8)
        assert torch.equal(C, C.T)
        assert torch.linalg.eigvalsh(C).min() > -1e-10 * C.diagonal().max()


def test_stats_roundtrip(tiny_model, tmp_path):
    model, tok = tiny_model
    stats = compute_mom2(model, tok, TEXTS, [1], max_len=16, progress=False)
    path = tmp_path / "s" / "mom2.safetensors"
    save_stats(path, stats, {"corpus": "test"})
    loaded, meta = load_stats(path)
    assert meta["corpus"] == "test" and meta["tokens"] == stats.tokens and meta["layers"] == [1]
    assert torch.equal(loaded[1], stats[1]) and loaded.tokens == stats.tokens
    assert [p.name for p in path.parent.iterdir()] == ["mom2.safetensors"]  # no temp files left


def test_stats_bad_input(tiny_model, tmp_path):
    model, tok = tiny_model
    with pytest.raises(InputError, match="layer 9"):
        compute_mom2(model, tok, TEXTS, [9], progress=False)
    with pytest.raises(InputError, match="no non-empty texts"):
        compute_mom2(model, tok, ["", "  "], [1], progress=False)
    with pytest.raises(InputError, match="not found"):
        load_stats(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_text("not safetensors")
    with pytest.raises(InputError, match="not a readable"):
        load_stats(tmp_path / "bad.safetensors")
