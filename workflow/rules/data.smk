# Stages 1-5: model, facts, control set, paraphrases, corpus and layer statistics.


rule prepare_model:
    input:
        code=code("prepare_model"),
    output:
        directory("data/models/{model}/base"),
    params:
        source=model_source,
    log:
        "logs/prepare_model/{model}.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "python -m edit_retention prepare-model --source {params.source:q} --out {output} 2> {log}"


rule prepare_facts:
    input:
        code=code("prepare_facts"),
        files=fact_source_files,
    output:
        records="data/facts/{facts}/records.jsonl",
        report="data/facts/{facts}/load_report.json",
    params:
        source=fact_source,
    log:
        "logs/prepare_facts/{facts}.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "python -m edit_retention prepare-facts --source {params.source:q} --out {output.records}"
        " --out-report {output.report} 2> {log}"


# paraphrase.generator: template (the records' own templates) or lm (a model of the study
# writes more; its prepared folder is then an input, see paraphrase_model in common.smk).
rule generate_paraphrases:
    input:
        code=code("generate_paraphrases"),
        records="data/facts/{facts}/records.jsonl",
        model=paraphrase_model,
    output:
        "data/facts/{facts}/paraphrases.jsonl",
    params:
        n_eval=config["paraphrase"]["n_eval"],
        seed=config["paraphrase"]["seed"],
        lm=paraphrase_lm_args,
    threads: 1
    log:
        "logs/paraphrases/{facts}.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m edit_retention paraphrases --records {input.records}"
        " --n-eval {params.n_eval} --seed {params.seed}{params.lm} --out {output} 2> {log}"


rule build_corpus:
    input:
        code=code("build_corpus"),
        records="data/facts/{facts}/records.jsonl",
        files=corpus_source_files,
    output:
        train="data/corpus/{corpus}/{facts}/train.jsonl",
        eval="data/corpus/{corpus}/{facts}/eval.jsonl",
        meta="data/corpus/{corpus}/{facts}/meta.json",
    params:
        source=corpus_source,
        n_train=corpus_n_train,
        n_eval=corpus_n_eval,
        seed=corpus_seed,
    log:
        "logs/corpus/{corpus}/{facts}.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "python -m edit_retention corpus --source {params.source:q} --records {input.records}"
        " --n-train {params.n_train} --n-eval {params.n_eval} --seed {params.seed}"
        " --out-train {output.train} --out-eval {output.eval} --out-meta {output.meta} 2> {log}"


rule select_intrinsic:
    input:
        code=code("select_intrinsic"),
        model="data/models/{model}/base",
        records="data/facts/{facts}/records.jsonl",
    output:
        edit="data/select/{model}/{facts}/edit.jsonl",
        control="data/select/{model}/{facts}/control.jsonl",
        scores="data/select/{model}/{facts}/base_known.jsonl",
    params:
        n_edit=config["select"]["n_edit"],
        n_control=config["select"]["n_control"],
        seed=config["select"]["seed"],
        batch_size=config["select"]["batch_size"],
        known=known_flag,
        device=config["device"],
    threads: 1
    resources:
        mem_mb=job_mem_mb,
    log:
        "logs/select/{model}/{facts}.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m edit_retention select --model {input.model}"
        " --device {params.device} --mem-mb {resources.mem_mb} --records {input.records} --n-edit {params.n_edit}"
        " --n-control {params.n_control} --seed {params.seed} --batch-size {params.batch_size} {params.known}"
        " --out-edit {output.edit} --out-control {output.control} --out-scores {output.scores}"
        " --score-cache data/select/{wildcards.model}/{wildcards.facts}/score_cache.jsonl 2> {log}"


# One job per (model, corpus, facts) fills every layer the study's editors read on that model
# (stats_layers in common.smk), in one pass over the corpus: one file per layer in the folder,
# each the same as a pass for that layer alone would write, shared by every editor.
rule layer_stats:
    input:
        code=code("layer_stats"),
        model="data/models/{model}/base",
        corpus="data/corpus/{corpus}/{facts}/train.jsonl",
    output:
        directory("data/stats/{model}/{corpus}/{facts}"),
    params:
        layers=stats_layer_args,
        n_samples=config["stats"]["n_samples"],
        max_len=config["stats"]["max_len"],
        batch_size=config["stats"]["batch_size"],
        device=config["device"],
    threads: 1
    resources:
        mem_mb=job_mem_mb,
    log:
        "logs/stats/{model}/{corpus}/{facts}.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m edit_retention stats --model {input.model}"
        " --device {params.device} --mem-mb {resources.mem_mb} --corpus {input.corpus} --layers {params.layers}"
        " --n-samples {params.n_samples} --max-len {params.max_len}"
        " --batch-size {params.batch_size} --out-dir {output} 2> {log}"
