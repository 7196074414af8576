# Helpers shared by the rules: grid expansion and parameter lookups (no lambdas in rules).
import json
import os
import sys

from edit_retention.codeinputs import stage_inputs
from edit_retention.config import check_source_files, check_study, config_layers
from edit_retention import keep_built
from edit_retention.plots import FIGURES as FIGURE_NAMES

_KEPT = {}  # filled by onstart, read by onerror


def _to_stderr(line):
    print(line, file=sys.stderr)


def study_config_files():
    """The config files merged into ``config``, in merge order: the Snakefile's configfile
    (params.yaml) first, then each --configfile (Snakemake lists those first, absolute)."""
    cli = [str(f) for f in workflow.config_settings.configfiles]
    files = [str(f) for f in workflow.configfiles if str(f) not in cli] + cli
    return [os.path.relpath(f) if os.path.abspath(f).startswith(os.getcwd() + os.sep) else f for f in files]


# The schema (filling its defaults) and the rest; an error names the file that sets the key.
check_study(config, where=f"study config ({' + '.join(study_config_files()) or 'none'})",
            layers=config_layers(study_config_files(), workflow.config_settings.config))

# What depends on where the jobs run is checked once Snakemake has chosen its executor and
# before any job starts (a job's old outputs are deleted when it starts): a CUDA device asked
# for on a machine that has none, when the jobs run on this machine.
onstart:
    if str(config["device"]).startswith("cuda") and not workflow.executor_plugin.common_settings.non_local_exec:
        from edit_retention.models import resolve_device

        try:
            resolve_device(config["device"])
        except ValueError as e:
            raise ValueError(f"study config ({' + '.join(study_config_files()) or 'none'}): device: {e}; "
                             "nothing was run") from None
    # The fact, corpus and task files the jobs about to run read exist and parse (here, not
    # at parse time: every cluster job parses the workflow again).
    check_source_files(config, where=f"study config ({' + '.join(study_config_files()) or 'none'})",
                       layers=config_layers(study_config_files(), workflow.config_settings.config),
                       inputs={str(f) for job in workflow.dag.needrun_jobs() for f in job.input})
    # A failed run leaves what was built before it (edit_retention.keep_built): the outputs
    # the jobs about to run would delete are hard-linked aside, and put back if their job fails.
    _KEPT.update(keep_built.snapshot(workflow, log=_to_stderr))


onsuccess:
    keep_built.discard(workflow)


onerror:
    keep_built.restore(workflow, _KEPT, log=_to_stderr)
    print_scheduler_hints(log)  # workflow/rules/cluster.smk


# Rules call `python` from their software environment: the rule's conda env under
# --software-deployment-method conda (workflow/envs/), else the interpreter running Snakemake.
_path = [os.path.dirname(sys.executable), *os.environ.get("PATH", "").split(os.pathsep)]
os.environ["PATH"] = os.pathsep.join(dict.fromkeys(p for p in _path if p))
G = config["grid"]
FACTS = G["facts"]
CORPUS = G["corpus"]
# One rule per figure (workflow/rules/report.smk), each with its own code inputs
# (src/edit_retention/plots/<name>.py), so restyling one figure reruns only that figure.
FIGURES = expand("figures/{name}.{ext}", name=FIGURE_NAMES, ext=["png", "pdf"])
# Figures that draw the fitted elasticity curves (the others do not depend on the fits).
FIGURES_WITH_FITS = {"retention_vs_steps", "retention_vs_k", "retention_vs_edit_size"}
RESULTS = ["results.md"]

wildcard_constraints:
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    facts="[A-Za-z0-9][A-Za-z0-9_.-]*",
    corpus="[A-Za-z0-9][A-Za-z0-9_.-]*",
    editor="[A-Za-z0-9][A-Za-z0-9_.-]*",
    remedy="[A-Za-z0-9][A-Za-z0-9_.-]*",
    task="[A-Za-z0-9][A-Za-z0-9_.-]*",
    k="[0-9]+",
    seed="[0-9]+",


def code(family, *extra):
    """The package source files that one rule family runs (its stage module
    src/edit_retention/stages/<family>.py), the CLI and every package module they import,
    transitively (edit_retention.codeinputs), plus ``extra`` entry modules and the family's
    data files. Inputs, so that changing a stage's code reruns it and its dependants."""
    return stage_inputs(family, *extra)


def job_mem_mb(wildcards):
    """Memory (MB) a model job reserves: Snakemake's resources.mem_mb (with --resources
    mem_mb=N it bounds how many run at once; under SLURM it is the job's --mem) and the
    budget its "auto" batch sizes fill. 0 (the default): unreserved, the machine's memory.
    --set-resources RULE:mem_mb=N (as the slurm profile does) overrides it per rule."""
    return int(config.get("mem_mb", 0))


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def study_config(wildcards):
    """The whole study config as JSON, from a function: a plain params string would be
    wildcard-expanded by Snakemake, and "${data_root}/..." paths contain "{data_root}"."""
    return as_json(config)


def resolved_source(source):
    """A source with a path under ${data_root}/ resolved against the config's data_root
    (edit_retention.data_root.resolve_source): the loaders get the path Snakemake watches."""
    from edit_retention.data_root import resolve_source

    return resolve_source(source, config.get("data_root"))


def source_files(source):
    """Local files a source reads (every file under a directory path), so that editing one
    reruns its dependants."""
    from edit_retention.data_root import source_files as files

    return files(source, config.get("data_root"))


def model_source(wildcards):
    return as_json(config["models"][wildcards.model]["source"])


def fact_source(wildcards):
    return as_json(resolved_source(config["facts"][wildcards.facts]["source"]))


def fact_source_files(wildcards):
    return source_files(config["facts"][wildcards.facts]["source"])


def corpus_cfg(wildcards):
    return config["corpora"][wildcards.corpus]


def corpus_n_train(wildcards):
    return corpus_cfg(wildcards)["n_train"]


def corpus_n_eval(wildcards):
    return corpus_cfg(wildcards)["n_eval"]


def corpus_seed(wildcards):
    return corpus_cfg(wildcards)["seed"]


def corpus_source(wildcards):
    return as_json(resolved_source(corpus_cfg(wildcards)["source"]))


def corpus_source_files(wildcards):
    return source_files(corpus_cfg(wildcards)["source"])


def resolved_hparams(model, editor):
    """An editor's full hyperparameters on a model (dataclass defaults < the model's hparams
    set file < the study's overrides). Passed resolved, so that editing a set file or a
    default reruns exactly the edits it changes."""
    from dataclasses import asdict

    from edit_retention.editors import make_hparams

    return asdict(make_hparams(editor, config["editors"][editor], hparams_set(model) or None))


def editor_trains(editor):
    """Editors whose edits need a trained artifact first (MEND's hypernetwork)."""
    return editor == "mend"


def hypernet_dir(model, facts):
    return f"data/edits/{model}/{facts}/_mend/hypernet"   # inside DVC's data/edits output


def editor_artifacts(wildcards):
    return [hypernet_dir(wildcards.model, wildcards.facts)] if editor_trains(wildcards.editor) else []


def editor_hparams(wildcards):
    hp = resolved_hparams(wildcards.model, wildcards.editor)
    if editor_trains(wildcards.editor):
        hp["hypernet"] = hypernet_dir(wildcards.model, wildcards.facts)
    return as_json(hp)


def mend_hparams(wildcards):
    return as_json(resolved_hparams(wildcards.model, "mend"))


def hparams_set(model):
    return config["models"][model].get("hparams", "")


def editor_layers(model, editor):
    """Layers an editor changes on a model (from its resolved hyperparameters)."""
    from edit_retention.editors import edited_layers, make_hparams

    return edited_layers(make_hparams(editor, resolved_hparams(model, editor)))


def editor_uses_stats(editor):
    from edit_retention.editors import get_editor

    return bool(getattr(get_editor(editor), "uses_stats", False))


def stats_dir(model, facts):
    """The layer_stats folder of a model and fact set (on the study corpus)."""
    return f"data/stats/{model}/{CORPUS}/{facts}"


def stats_layers(model):
    """Every layer whose statistics an editor of the grid reads on ``model``: the layer_stats
    job computes them all in one pass (one file per layer)."""
    return sorted({l for e in G["editors"] if editor_uses_stats(e) for l in editor_layers(model, e)})


def stats_layer_args(wildcards):
    return " ".join(str(l) for l in stats_layers(wildcards.model))


def editor_stats(wildcards):
    """The layer_stats folder an editor reads; its files are editor_stats_files."""
    if not editor_uses_stats(wildcards.editor):
        return []
    need = editor_layers(wildcards.model, wildcards.editor)
    missing = sorted(set(need) - set(stats_layers(wildcards.model)))
    if missing:
        raise ValueError(f"editor {wildcards.editor} on model {wildcards.model} reads statistics of layers "
                         f"{missing}, which no editor of grid.editors {G['editors']} needs: the layer_stats job "
                         "computes only those; add the editor to grid.editors")
    return [stats_dir(wildcards.model, wildcards.facts)]


def editor_stats_files(wildcards):
    """The per-layer statistics files an editor reads (inside its editor_stats folder)."""
    from edit_retention.stats import layer_file

    return " ".join(str(layer_file(d, l)) for d in editor_stats(wildcards)
                    for l in editor_layers(wildcards.model, wildcards.editor))


def known_flag(wildcards):
    return "" if config["select"]["known_only"] else "--all-facts"


def remedy_k(remedy):
    return config["remedies"][remedy]["paraphrase_k"]


def finetune_edit(wildcards):
    return f"data/edits/{wildcards.model}/{wildcards.facts}/{wildcards.editor}/k{remedy_k(wildcards.remedy)}"


def finetune_freeze(wildcards):
    return config["remedies"][wildcards.remedy]["freeze"]


def finetune_method(wildcards):
    """The remedy's fine-tuning method (JSON: "full" | "lora" | "dora" | {type, r, ...})."""
    return as_json(config["remedies"][wildcards.remedy].get("method", "full"))


def finetune_launch(wildcards):
    """The program before `finetune ...`: python, or torchrun / accelerate launch with the
    study's launch.processes (src/edit_retention/launch.py)."""
    from edit_retention.launch import launch_command
    return launch_command(config.get("launch", {}))


def task_params(wildcards):
    return as_json(config["tasks"][wildcards.task].get("params", {}))


def task_type(wildcards):
    return config["tasks"][wildcards.task]["type"]


def task_uses_corpus(task):
    """A causal_lm task without a source trains on the study corpus (shared with stats)."""
    cfg = config["tasks"][task]
    return cfg["type"] == "causal_lm" and "source" not in cfg


def task_source(wildcards):
    cfg = config["tasks"][wildcards.task]
    src = resolved_source(cfg.get("source", {"type": "builtin"}))
    if isinstance(src, dict) and isinstance(src.get("eval_path"), str):
        src = {**src, "eval_path": resolved_source({"path": src["eval_path"]})["path"]}
    return as_json(src)


def task_source_files(wildcards):
    src = config["tasks"][wildcards.task].get("source", {})
    files = source_files(src)
    if isinstance(src, dict) and isinstance(src.get("eval_path"), str):
        files += source_files({"path": src["eval_path"]})
    return files


def task_n(wildcards, key):
    return config["tasks"][wildcards.task].get(key, {"n_train": 1000, "n_eval": 100, "seed": 0}[key])


def task_n_train(wildcards):
    return task_n(wildcards, "n_train")


def task_n_eval(wildcards):
    return task_n(wildcards, "n_eval")


def task_seed(wildcards):
    return task_n(wildcards, "seed")


def task_data(wildcards):
    """{train, eval} example files a task fine-tunes on."""
    if task_uses_corpus(wildcards.task):
        return {part: f"data/corpus/{CORPUS}/{wildcards.facts}/{part}.jsonl" for part in ("train", "eval")}
    return {part: f"data/finetuned/_tasks/{wildcards.task}/{wildcards.facts}/{part}.jsonl" for part in ("train", "eval")}


def checkpoint_steps(task):
    """Fine-tuning steps at which the facts are scored (FinetuneArgs.checkpoint_steps)."""
    from edit_retention.finetune import FinetuneArgs

    return FinetuneArgs.from_dict(config["tasks"][task].get("params", {})).checkpoint_steps()


def cells():
    """One summary cell per grid point (model x editor x task x remedy x seed); phases
    base, edited, finetuned and one step-<N> per fine-tuning checkpoint."""
    out = []
    for m in G["models"]:
        for e in G["editors"]:
            for t in G["tasks"]:
                for r in G["remedies"]:
                    for s in G["seeds"]:
                        base = f"data/scores/{m}/{FACTS}"
                        ft = f"{e}/{r}/{t}/s{s}"
                        cell = {
                            "model": m, "editor": e, "task": t, "remedy": r, "seed": s,
                            "base": f"{base}/base.jsonl",
                            "edited": f"{base}/edited/{e}/k{remedy_k(r)}.jsonl",
                            "finetuned": f"{base}/finetuned/{ft}.jsonl",
                            "task_metrics": f"data/finetuned/{m}/{FACTS}/{ft}/metrics.json",
                            "health": f"data/edits/{m}/{FACTS}/{e}/k{remedy_k(r)}.health.json",
                        }
                        for n in checkpoint_steps(t):
                            cell[f"step-{n}"] = f"data/finetuned/{m}/{FACTS}/{ft}/steps/step-{n}.jsonl"
                        out.append(cell)
    return out


def cell_files():
    """Inputs of the summary; a checkpoint's scores file lies in the finetune job's steps/
    folder (a directory output), so the folder is the input."""
    from pathlib import Path

    keys = ("base", "edited", "finetuned", "task_metrics", "health")
    files = {c[k] for c in cells() for k in keys}
    files |= {str(Path(v).parent) for c in cells() for k, v in c.items() if k.startswith("step-")}
    return sorted(files)


def cell_args():
    return " ".join("--cell " + ",".join(f"{k}={v}" for k, v in c.items()) for c in cells())


def all_edits():
    """Every edit of the grid and its health measurement."""
    edits = {f"data/edits/{m}/{FACTS}/{e}/k{remedy_k(r)}" for m in G["models"] for e in G["editors"]
             for r in G["remedies"]}
    return sorted(edits | {f"{d}.health.json" for d in edits})


def all_stats():
    """One layer_stats folder per model whose grid editors read statistics."""
    return [stats_dir(m, FACTS) for m in G["models"] if stats_layers(m)]


# Summary, claims, figures and report (workflow/rules/report.smk).
def summary_remedies():
    """The remedies config of the grid's remedies (JSON): claims find their cells by these
    definitions (paraphrase_k, freeze, method), never by remedy names."""
    return as_json({r: config["remedies"][r] for r in G["remedies"]})


def summary_tasks():
    return as_json({t: config["tasks"][t] for t in G["tasks"]})


def figure_code(name):
    """A figure rule runs plots/<name>.py, imported by name (plots.build)."""
    return code("figure", f"plots.{name}")


def figure_fits(name):
    return ["data/results/elasticity.json"] if name in FIGURES_WITH_FITS else []


def figure_fits_flag(name):
    return " ".join(f"--fits {f}" for f in figure_fits(name))


# Paraphrase generators (the generate_paraphrases rule, workflow/rules/data.smk).
def paraphrase_lm():
    """The lm generator's settings (paraphrase.lm), or None with the template generator."""
    para = config["paraphrase"]
    return para["lm"] if para.get("generator", "template") == "lm" else None


def paraphrase_model(wildcards):
    """The prepared model that writes the paraphrases (an input only for the lm generator)."""
    lm = paraphrase_lm()
    return [f"data/models/{lm['model']}/base"] if lm else []


def paraphrase_lm_args(wildcards):
    """CLI options of the lm generator, after a space ("" for the template generator)."""
    import shlex

    lm = paraphrase_lm()
    if not lm:
        return ""
    flags = {"model": paraphrase_model(wildcards)[0], "device": config["device"], "lm-seed": lm.get("seed")}
    flags.update({k.replace("_", "-"): lm.get(k) for k in ("n_candidates", "max_new_tokens", "temperature",
                                                          "top_p", "batch_size", "mode", "evaluate_from")})
    return " --generator lm " + " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in flags.items() if v is not None)
