# Helpers shared by the rules: grid expansion and parameter lookups (no lambdas in rules).
import json
import sys

from edit_retention.config import check_study

check_study(config, where="study config")

PY = sys.executable
G = config["grid"]
FACTS = G["facts"]
CORPUS = G["corpus"]
FIGURE_NAMES = ["retention_by_editor", "remedies", "phases"]
FIGURES = expand("figures/{name}.{ext}", name=FIGURE_NAMES, ext=["png", "pdf"])

wildcard_constraints:
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    facts="[A-Za-z0-9][A-Za-z0-9_.-]*",
    corpus="[A-Za-z0-9][A-Za-z0-9_.-]*",
    editor="[A-Za-z0-9][A-Za-z0-9_.-]*",
    remedy="[A-Za-z0-9][A-Za-z0-9_.-]*",
    task="[A-Za-z0-9][A-Za-z0-9_.-]*",
    k="[0-9]+",
    seed="[0-9]+",
    layer="[0-9]+",


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def source_files(source):
    """Local files a source reads, so that editing one reruns its dependants."""
    return [source["path"]] if "path" in source else []


def model_source(wildcards):
    return as_json(config["models"][wildcards.model]["source"])


def fact_source(wildcards):
    return as_json(config["facts"][wildcards.facts]["source"])


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
    return as_json(corpus_cfg(wildcards)["source"])


def corpus_source_files(wildcards):
    return source_files(corpus_cfg(wildcards)["source"])


def resolved_hparams(model, editor):
    """An editor's full hyperparameters on a model (dataclass defaults < the model's hparams
    set file < the study's overrides). Passed resolved, so that editing a set file or a
    default reruns exactly the edits it changes."""
    from dataclasses import asdict

    from edit_retention.editors import make_hparams

    return asdict(make_hparams(editor, config["editors"][editor], hparams_set(model) or None))


def editor_hparams(wildcards):
    return as_json(resolved_hparams(wildcards.model, wildcards.editor))


def hparams_set(model):
    return config["models"][model].get("hparams", "")


def editor_layers(model, editor):
    """Layers an editor changes on a model (from its resolved hyperparameters)."""
    from edit_retention.editors import edited_layers, make_hparams

    return edited_layers(make_hparams(editor, resolved_hparams(model, editor)))


def editor_uses_stats(editor):
    from edit_retention.editors import get_editor

    return bool(getattr(get_editor(editor), "uses_stats", False))


def editor_stats(wildcards):
    if not editor_uses_stats(wildcards.editor):
        return []
    return expand("data/stats/{model}/{corpus}/{facts}/layer{layer}.safetensors", model=wildcards.model,
                  corpus=CORPUS, facts=wildcards.facts, layer=editor_layers(wildcards.model, wildcards.editor))


def known_flag(wildcards):
    return "" if config["select"]["known_only"] else "--all-facts"


def remedy_k(remedy):
    return config["remedies"][remedy]["paraphrase_k"]


def finetune_edit(wildcards):
    return f"data/edits/{wildcards.model}/{wildcards.facts}/{wildcards.editor}/k{remedy_k(wildcards.remedy)}"


def finetune_freeze(wildcards):
    return config["remedies"][wildcards.remedy]["freeze"]


def task_params(wildcards):
    return as_json(config["tasks"][wildcards.task].get("params", {}))


def cells():
    """One summary cell per grid point (model x editor x task x remedy x seed)."""
    out = []
    for m in G["models"]:
        for e in G["editors"]:
            for t in G["tasks"]:
                for r in G["remedies"]:
                    for s in G["seeds"]:
                        base = f"data/scores/{m}/{FACTS}"
                        ft = f"{e}/{r}/{t}/s{s}"
                        out.append({
                            "model": m, "editor": e, "task": t, "remedy": r, "seed": s,
                            "base": f"{base}/base.jsonl",
                            "edited": f"{base}/edited/{e}/k{remedy_k(r)}.jsonl",
                            "finetuned": f"{base}/finetuned/{ft}.jsonl",
                            "task_metrics": f"data/finetuned/{m}/{FACTS}/{ft}/metrics.json",
                        })
    return out


def cell_files():
    keys = ("base", "edited", "finetuned", "task_metrics")
    return sorted({c[k] for c in cells() for k in keys})


def cell_args():
    return " ".join("--cell " + ",".join(f"{k}={v}" for k, v in c.items()) for c in cells())


def all_edits():
    return sorted({f"data/edits/{m}/{FACTS}/{e}/k{remedy_k(r)}"
                   for m in G["models"] for e in G["editors"] for r in G["remedies"]})


def all_stats():
    out = []
    for m in G["models"]:
        for e in G["editors"]:
            if editor_uses_stats(e):
                out += expand("data/stats/{m}/{c}/{f}/layer{l}.safetensors", m=m, c=CORPUS, f=FACTS,
                              l=editor_layers(m, e))
    return sorted(set(out))
