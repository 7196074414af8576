# Stage 6: editing. One edit per (model, facts, editor, k), shared by every task, remedy and seed.


rule apply_edits:
    input:
        code=code("apply_edits"),
        model="data/models/{model}/base",
        requests="data/select/{model}/{facts}/edit.jsonl",
        paraphrases="data/facts/{facts}/paraphrases.jsonl",
        stats=editor_stats,
        artifacts=editor_artifacts,
    output:
        directory("data/edits/{model}/{facts}/{editor}/k{k}"),
    params:
        hparams=editor_hparams,
        stats=editor_stats_files,
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
        " --stats {params.stats} --out {output} 2> {log}"


# Edit health (health.py), before any fine-tuning: does the edited model still say what the
# base model said about facts it was not asked to change, and read ordinary text as well?
# Its own job, so that the gate's thresholds (read by summarize) or a change to the health
# code never redo an edit.
rule edit_health:
    input:
        code=code("edit_health"),
        model="data/models/{model}/base",
        edit="data/edits/{model}/{facts}/{editor}/k{k}",
        edited="data/select/{model}/{facts}/edit.jsonl",
        control="data/select/{model}/{facts}/control.jsonl",
        texts=f"data/corpus/{CORPUS}/{{facts}}/eval.jsonl",
    output:
        "data/edits/{model}/{facts}/{editor}/k{k}.health.json",
    params:
        n_texts=config["health"]["n_texts"],
        device=config["device"],
    threads: 1
    log:
        "logs/edit_health/{model}/{facts}/{editor}/k{k}.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m edit_retention edit-health --model {input.model}"
        " --device {params.device} --edit {input.edit} --edited {input.edited} --control {input.control}"
        " --texts {input.texts} --n-texts {params.n_texts} --out {output} 2> {log}"


# MEND's hypernetwork, trained once per (model, fact set) on the facts outside the study's
# edit and control sets, and shared by every edit that uses it.
rule train_mend:
    input:
        code=code("train_mend"),
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
