"""layer_stats: model + corpus -> second-moment statistics of several layers' MLP keys,
in one pass over the corpus, written as one file per layer (``<out-dir>/layer<N>.safetensors``).

Each file holds what a run for that layer alone writes, byte for byte: the same texts in the
same batches reach every layer (the pass is cut short after the deepest one), and a layer's
sum only ever adds its own keys. The Snakemake rule asks for every layer the study's editors
read on a model (``stats_layers`` in workflow/rules/common.smk).
"""
from __future__ import annotations

import time

from ..checksums import write_manifest
from ..io import read_texts
from ..models import check_layers, load_model
from ..stats import Mom2, compute_mom2, layer_file, save_stats


def run(a) -> None:
    model, tok = load_model(a.model, device=a.device)
    layers = sorted(set(check_layers(model, a.layers, where="stats --layers")))
    texts = read_texts(a.corpus)[: a.n_samples]
    t0 = time.time()
    stats = compute_mom2(model, tok, texts, layers, max_len=a.max_len, batch_size=a.batch_size)
    seconds = time.time() - t0
    for layer in layers:
        save_stats(layer_file(a.out_dir, layer), Mom2({layer: stats[layer]}, stats.tokens, stats.texts),
                   {"layer": layer, "n_samples": len(texts), "max_len": a.max_len, "corpus": a.corpus,
                    "seconds": seconds})
    write_manifest(a.out_dir)       # load_stats checks each file against it
