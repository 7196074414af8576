# Stage 6: editing. One edit per (model, facts, editor, k), shared by every task, remedy and seed.


rule apply_edits:
    input:
        code=CODE_EDIT,
        model="data/models/{model}/base",
        requests="data/select/{model}/{facts}/edit.jsonl",
        paraphrases="data/facts/{facts}/paraphrases.jsonl",
        stats=editor_stats,
    output:
        directory("data/edits/{model}/{facts}/{editor}/k{k}"),
    params:
        hparams=editor_hparams,
        regime=config["edit"]["regime"],
        batch_size=config["edit"].get("batch_size", 0),
        device=config["device"],
    threads: 1
    log:
        "logs/edit/{model}/{facts}/{editor}/k{k}.log",
    shell:
        "OMP_NUM_THREADS={threads} {PY} -m edit_retention edit --model {input.model}"
        " --device {params.device} --editor {wildcards.editor} --hparams {params.hparams:q}"
        " --regime {params.regime} --batch-size {params.batch_size}"
        " --requests {input.requests} --paraphrases {input.paraphrases} --k {wildcards.k}"
        " --stats {input.stats} --out {output} 2> {log}"
