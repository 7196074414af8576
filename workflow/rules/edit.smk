# Stage 6: editing. One edit per (model, facts, editor, k), shared by every task, remedy and seed.


rule apply_edits:
    input:
        code=CODE_EDIT,
        model="data/models/{model}/base",
        requests="data/select/{model}/{facts}/edit.jsonl",
        paraphrases="data/facts/{facts}/paraphrases.jsonl",
        stats=editor_stats,
        artifacts=editor_artifacts,
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
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m edit_retention edit --model {input.model}"
        " --device {params.device} --editor {wildcards.editor} --hparams {params.hparams:q}"
        " --regime {params.regime} --batch-size {params.batch_size}"
        " --requests {input.requests} --paraphrases {input.paraphrases} --k {wildcards.k}"
        " --stats {input.stats} --out {output} 2> {log}"


# MEND's hypernetwork, trained once per (model, fact set) on the facts outside the study's
# edit and control sets, and shared by every edit that uses it.
rule train_mend:
    input:
        code=CODE_EDIT + code("mend_train.py"),
        model="data/models/{model}/base",
        records="data/facts/{facts}/records.jsonl",
        edit="data/select/{model}/{facts}/edit.jsonl",
        control="data/select/{model}/{facts}/control.jsonl",
    output:
        directory("data/edits/{model}/{facts}/_mend/hypernet"),
    params:
        hparams=mend_hparams,
        seed=config["select"].get("seed", 0),
        device=config["device"],
    threads: 1
    log:
        "logs/train_mend/{model}/{facts}.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m edit_retention train-mend --model {input.model}"
        " --device {params.device} --records {input.records} --exclude {input.edit} {input.control}"
        " --hparams {params.hparams:q} --seed {params.seed} --out {output} 2> {log}"
