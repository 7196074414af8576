# Stage 7: fine-tuning the edited model on a downstream task (src/edit_retention/tasks/),
# with the remedy's method (full, LoRA, DoRA) and freezing strategy. The full fine-tuned
# weights are temporary: they are deleted once evaluated, only the task metrics, the
# training log and the checkpoint scores (steps/step-<N>.jsonl) are kept. Task data live
# under data/finetuned/_tasks/ (built by the same DVC stage, finetune_evaluate).
# The study's launch: setting runs the stage in one process (python) or N (torchrun /
# accelerate launch; src/edit_retention/launch.py).


rule build_task_data:
    input:
        code=code("build_task_data"),
        records="data/facts/{facts}/records.jsonl",
        files=task_source_files,
    output:
        train="data/finetuned/_tasks/{task}/{facts}/train.jsonl",
        eval="data/finetuned/_tasks/{task}/{facts}/eval.jsonl",
        meta="data/finetuned/_tasks/{task}/{facts}/meta.json",
    params:
        type=task_type,
        source=task_source,
        n_train=task_n_train,
        n_eval=task_n_eval,
        seed=task_seed,
    log:
        "logs/task_data/{task}/{facts}.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "python -m edit_retention task-data --type {params.type} --source {params.source:q}"
        " --records {input.records} --n-train {params.n_train} --n-eval {params.n_eval}"
        " --seed {params.seed} --out-train {output.train} --out-eval {output.eval}"
        " --out-meta {output.meta} 2> {log}"


rule finetune:
    input:
        unpack(task_data),
        code=code("finetune"),
        model="data/models/{model}/base",
        edit=finetune_edit,
        edited="data/select/{model}/{facts}/edit.jsonl",
        control="data/select/{model}/{facts}/control.jsonl",
        paraphrases="data/facts/{facts}/paraphrases.jsonl",
    output:
        model=temp(directory("data/finetuned/{model}/{facts}/{editor}/{remedy}/{task}/s{seed}/model")),
        steps=directory("data/finetuned/{model}/{facts}/{editor}/{remedy}/{task}/s{seed}/steps"),
        metrics="data/finetuned/{model}/{facts}/{editor}/{remedy}/{task}/s{seed}/metrics.json",
        train_log="data/finetuned/{model}/{facts}/{editor}/{remedy}/{task}/s{seed}/train_log.json",
    params:
        launch=finetune_launch,
        task=task_params,
        task_type=task_type,
        method=finetune_method,
        freeze=finetune_freeze,
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
        generation_tokens=config["evaluate"].get("generation_tokens", 50),
    threads: 1
    # Fine-tuning is the study's critical path (README "Results of the default study"): when
    # the edits are done, start every fine-tuning before edit_health and evaluate_edited,
    # which only the summary waits for.
    priority: 10
    resources:
        mem_mb=job_mem_mb,
    log:
        "logs/finetune/{model}/{facts}/{editor}/{remedy}/{task}/s{seed}.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.launch} finetune --model {input.model}"
        " --device {params.device} --mem-mb {resources.mem_mb} --edit {input.edit} --task-type {params.task_type}"
        " --train {input.train} --eval {input.eval}"
        " --params {params.task:q} --method {params.method:q} --freeze {params.freeze} --seed {wildcards.seed}"
        " --out-model {output.model} --out-metrics {output.metrics} --out-steps {output.steps}"
        " --out-log {output.train_log} --edited {input.edited} --control {input.control}"
        " --paraphrases {input.paraphrases} --batch-size {params.batch_size}"
        " --generation-tokens {params.generation_tokens} 2> {log}"
