"""The edit-retention study as one DAG.

    snakemake --cores all                                           # the default study
    snakemake --cores all --configfile workflow/config/smoke.yaml   # tiny model, minutes
    snakemake --cores all --profile workflow/profiles/gpu           # one job per GPU

Wildcards are the study grid: model, facts, corpus, editor, k (augmentation
paraphrases), remedy, task, seed. Rules are thin: each calls one CLI stage.
"""
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"

# The config is validated (and the schema's defaults filled in) once, by
# edit_retention.config.check_study in workflow/rules/common.smk.


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/edit.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/cluster.smk"


rule all:
    default_target: True
    input:
        "data/results/summary.csv",
        "data/results/metrics.json",
        FIGURES,
        RESULTS,
