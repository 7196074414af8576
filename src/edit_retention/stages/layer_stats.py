"""layer_stats: model + corpus -> second-moment statistics of one layer's MLP keys."""
from __future__ import annotations

import time

from ..io import read_texts
from ..models import check_layers, load_model
from ..stats import compute_mom2, save_stats


def run(a) -> None:
    model, tok = load_model(a.model, device=a.device)
    layers = check_layers(model, [a.layer], where="stats --layer")
    texts = read_texts(a.corpus)[: a.n_samples]
    t0 = time.time()
    stats = compute_mom2(model, tok, texts, layers, max_len=a.max_len, batch_size=a.batch_size)
    save_stats(a.out, stats, {"layer": a.layer, "n_samples": len(texts), "max_len": a.max_len,
                              "corpus": a.corpus, "seconds": time.time() - t0})
