# Stages 9-10 and the aggregate targets that dvc.yaml stages call.


rule summarize:
    input:
        cell_files(),
    output:
        csv="data/results/summary.csv",
        metrics="data/results/metrics.json",
        plot="data/results/retention.csv",
    params:
        cells=cell_args(),
    log:
        "logs/summarize.log",
    shell:
        "{PY} -m edit_retention summarize {params.cells} --out-csv {output.csv}"
        " --out-metrics {output.metrics} 2> {log}"


rule figures:
    input:
        "data/results/summary.csv",
    output:
        FIGURES,
    log:
        "logs/figures.log",
    shell:
        "{PY} -m edit_retention figures --summary {input} --out-dir figures 2> {log}"


# Aggregate targets, one per stage family (called by dvc.yaml).
rule models:
    input:
        expand("data/models/{m}/base", m=G["models"]),


rule facts:
    input:
        f"data/facts/{FACTS}/records.jsonl",
        f"data/facts/{FACTS}/paraphrases.jsonl",
        expand("data/corpus/{c}/{f}/{part}", c=CORPUS, f=FACTS, part=["train.jsonl", "eval.jsonl", "meta.json"]),


rule intrinsic:
    input:
        expand("data/select/{m}/{f}/{part}.jsonl", m=G["models"], f=FACTS, part=["edit", "control", "base_known"]),


rule stats:
    input:
        all_stats(),


rule edits:
    input:
        all_edits(),


rule scores:
    input:
        cell_files(),
