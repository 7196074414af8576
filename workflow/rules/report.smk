# Stages 9-10 (summary, statistics, figures, results.md) and the aggregate targets that
# dvc.yaml stages call. `snakemake --report report.html` collects the outputs flagged with
# report(): the figures (captions in workflow/report/), the claims table and the config.


report: "../report/workflow.rst"


rule summarize:
    input:
        cell_files(),
        code=code("summarize"),
        records=f"data/facts/{FACTS}/records.jsonl",
    output:
        csv="data/results/summary.csv",
        metrics="data/results/metrics.json",
        plot="data/results/retention.csv",
        cells="data/results/cells.csv",
        facts="data/results/facts.csv",
        problems="data/results/problems.csv",
        health="data/results/health.csv",
    params:
        cells=cell_args(),
        health=as_json(config["health"]),
        remedies=summary_remedies(),
        tasks=summary_tasks(),
    log:
        "logs/summarize.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "python -m edit_retention summarize {params.cells} --records {input.records}"
        " --remedies {params.remedies:q} --tasks {params.tasks:q} --out-csv {output.csv}"
        " --out-metrics {output.metrics} --out-cells {output.cells} --out-facts {output.facts}"
        " --out-problems {output.problems} --out-health {output.health} --health {params.health:q} 2> {log}"


rule claims:
    input:
        code=code("claims"),
        cells="data/results/cells.csv",
        facts="data/results/facts.csv",
        health="data/results/health.csv",
    output:
        claims=report("data/results/claims.csv", caption="../report/claims.rst", category="Claims"),
        claims_json="data/results/claims.json",
        fits="data/results/elasticity.json",
        fits_csv="data/results/elasticity.csv",
        curves="data/results/retention_curves.csv",
        effects="data/results/effects.csv",
    log:
        "logs/claims.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "python -m edit_retention analyze --cells {input.cells} --facts {input.facts} --health {input.health}"
        " --out-claims {output.claims} --out-claims-json {output.claims_json}"
        " --out-elasticity {output.fits} --out-elasticity-csv {output.fits_csv}"
        " --out-curves {output.curves} --out-effects {output.effects} 2> {log}"


for _name in FIGURE_NAMES:

    rule:
        name:
            f"figure_{_name}"
        input:
            code=figure_code(_name),
            cells="data/results/cells.csv",
            fits=figure_fits(_name),
        output:
            png=report(f"figures/{_name}.png", caption=f"../report/{_name}.rst", category="Figures"),
            pdf=f"figures/{_name}.pdf",
        params:
            name=_name,
            fits=figure_fits_flag(_name),
        log:
            f"logs/figures/{_name}.log",
        conda:
            "../envs/edit-retention.yaml"
        shell:
            "python -m edit_retention figure {params.name} --cells {input.cells} {params.fits}"
            " --out-png {output.png} --out-pdf {output.pdf} 2> {log}"


rule report:
    input:
        code=code("report"),
        cells="data/results/cells.csv",
        claims="data/results/claims.csv",
        fits="data/results/elasticity.json",
        problems="data/results/problems.csv",
        health="data/results/health.csv",
        models=expand("data/models/{m}/base", m=G["models"]),
        facts=f"data/facts/{FACTS}/records.jsonl",
        facts_report=f"data/facts/{FACTS}/load_report.json",  # read beside --facts (report_provenance.fact_versions)
    output:
        md=report("results.md", caption="../report/results.rst", category="Results"),
        config=report("data/results/study_config.json", caption="../report/config.rst", category="Config"),
    params:
        config=study_config,
    log:
        "logs/report.log",
    conda:
        "../envs/edit-retention.yaml"
    shell:
        "python -m edit_retention report --cells {input.cells} --claims {input.claims}"
        " --elasticity {input.fits} --problems {input.problems} --health {input.health} --config {params.config:q}"
        " --models {input.models} --facts {input.facts} --out {output.md}"
        " --out-config {output.config} 2> {log}"


# Aggregate targets, one per stage family (called by dvc.yaml).
rule results_tables:
    input:
        rules.summarize.output,
        rules.claims.output,


rule figures:
    input:
        FIGURES,


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
