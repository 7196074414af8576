# Stage 7: fine-tuning the edited model on a downstream task. The full fine-tuned weights
# are temporary: they are deleted once evaluated, only the task metrics are kept.


rule finetune:
    input:
        model="data/models/{model}/base",
        edit=finetune_edit,
        train=f"data/corpus/{CORPUS}/{{facts}}/train.jsonl",
        eval=f"data/corpus/{CORPUS}/{{facts}}/eval.jsonl",
        edited="data/select/{model}/{facts}/edit.jsonl",
        control="data/select/{model}/{facts}/control.jsonl",
        paraphrases="data/facts/{facts}/paraphrases.jsonl",
    output:
        model=temp(directory("data/finetuned/{model}/{facts}/{editor}/{remedy}/{task}/s{seed}/model")),
        metrics="data/finetuned/{model}/{facts}/{editor}/{remedy}/{task}/s{seed}/metrics.json",
        train_log="data/finetuned/{model}/{facts}/{editor}/{remedy}/{task}/s{seed}/train_log.json",
    params:
        task=task_params,
        freeze=finetune_freeze,
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
    threads: 1
    log:
        "logs/finetune/{model}/{facts}/{editor}/{remedy}/{task}/s{seed}.log",
    shell:
        "OMP_NUM_THREADS={threads} {PY} -m edit_retention finetune --model {input.model}"
        " --device {params.device} --edit {input.edit} --train {input.train} --eval {input.eval}"
        " --params {params.task:q} --freeze {params.freeze} --seed {wildcards.seed}"
        " --out-model {output.model} --out-metrics {output.metrics}"
        " --out-log {output.train_log} --edited {input.edited} --control {input.control}"
        " --paraphrases {input.paraphrases} --batch-size {params.batch_size} 2> {log}"
