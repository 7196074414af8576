# Stage 8: raw per-prompt scores at each phase (base, edited, fine-tuned).


rule evaluate_base:
    input:
        code=code("evaluate"),
        model="data/models/{model}/base",
        edited="data/select/{model}/{facts}/edit.jsonl",
        control="data/select/{model}/{facts}/control.jsonl",
        paraphrases="data/facts/{facts}/paraphrases.jsonl",
    output:
        "data/scores/{model}/{facts}/base.jsonl",
    params:
        batch_size=config["evaluate"]["batch_size"],
        generation_tokens=config["evaluate"].get("generation_tokens", 50),
        device=config["device"],
    threads: 1
    resources:
        mem_mb=job_mem_mb,
    log:
        "logs/evaluate/{model}/{facts}/base.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m edit_retention evaluate --model {input.model}"
        " --device {params.device} --mem-mb {resources.mem_mb} --edited {input.edited} --control {input.control}"
        " --paraphrases {input.paraphrases} --batch-size {params.batch_size}"
        " --generation-tokens {params.generation_tokens} --out {output} 2> {log}"


rule evaluate_edited:
    input:
        code=code("evaluate"),
        model="data/models/{model}/base",
        edit="data/edits/{model}/{facts}/{editor}/k{k}",
        edited="data/select/{model}/{facts}/edit.jsonl",
        control="data/select/{model}/{facts}/control.jsonl",
        paraphrases="data/facts/{facts}/paraphrases.jsonl",
    output:
        "data/scores/{model}/{facts}/edited/{editor}/k{k}.jsonl",
    params:
        batch_size=config["evaluate"]["batch_size"],
        generation_tokens=config["evaluate"].get("generation_tokens", 50),
        device=config["device"],
    threads: 1
    resources:
        mem_mb=job_mem_mb,
    log:
        "logs/evaluate/{model}/{facts}/edited/{editor}/k{k}.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m edit_retention evaluate --model {input.model}"
        " --device {params.device} --mem-mb {resources.mem_mb} --edit {input.edit} --edited {input.edited} --control {input.control}"
        " --paraphrases {input.paraphrases} --batch-size {params.batch_size}"
        " --generation-tokens {params.generation_tokens} --out {output} 2> {log}"


rule evaluate_finetuned:
    input:
        code=code("evaluate"),
        model="data/finetuned/{model}/{facts}/{editor}/{remedy}/{task}/s{seed}/model",
        edited="data/select/{model}/{facts}/edit.jsonl",
        control="data/select/{model}/{facts}/control.jsonl",
        paraphrases="data/facts/{facts}/paraphrases.jsonl",
    output:
        "data/scores/{model}/{facts}/finetuned/{editor}/{remedy}/{task}/s{seed}.jsonl",
    params:
        batch_size=config["evaluate"]["batch_size"],
        generation_tokens=config["evaluate"].get("generation_tokens", 50),
        device=config["device"],
    threads: 1
    resources:
        mem_mb=job_mem_mb,
    log:
        "logs/evaluate/{model}/{facts}/finetuned/{editor}/{remedy}/{task}/s{seed}.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m edit_retention evaluate --model {input.model}"
        " --device {params.device} --mem-mb {resources.mem_mb} --edited {input.edited} --control {input.control}"
        " --paraphrases {input.paraphrases} --batch-size {params.batch_size}"
        " --generation-tokens {params.generation_tokens} --out {output} 2> {log}"
