"""The command line's options: one subparser per pipeline stage, in three groups (data
inputs, model jobs, results). ``cli`` builds the parser with ``add_stage_parsers`` and
dispatches each subcommand to its stage module.

Structured options (sources, hyperparameters) are JSON strings (``_json``).
"""
from __future__ import annotations

import argparse
import json

from .memory import batch_size_arg


def _json(s: str):
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from e


def _method_arg(s: str):
    """--method: a bare name (lora) or JSON ("lora", {"type": "lora", ...})."""
    return s if s in ("full", "lora", "dora") else _json(s)


def required(s, *flags, type=str) -> None:
    for f in flags:
        s.add_argument(f, type=type, required=True)


def add_stage_parsers(sub, stages: dict) -> None:
    """Add every stage's subparser to ``sub`` (an ``add_subparsers`` action), in the order
    ``--help`` lists them; each sets ``stage`` to its entry of ``stages`` (subcommand ->
    "module:function")."""
    def add(name, help):
        s = sub.add_parser(name, help=help, description=help)
        s.set_defaults(stage=stages[name])
        return s

    _data_stages(add)
    _model_stages(add, sub)
    _result_stages(add)


def _data_stages(add) -> None:
    """The inputs: a prepared model, facts, paraphrases, the corpus, task data."""
    s = add("prepare-model", "materialise a model source as safetensors")
    s.add_argument("--source", type=_json, required=True, help="model source JSON")
    s.add_argument("--out", required=True)
    s = add("prepare-facts", "load a fact source into records.jsonl")
    s.add_argument("--source", type=_json, required=True, help="fact source JSON")
    s.add_argument("--out", required=True)
    s.add_argument("--out-report", help="load report: drops by reason with case ids, relation strata (JSON)")
    s = add("paraphrases", "split paraphrases into augmentation / evaluation "
            "(the records' templates, or those plus / instead of ones a language model writes)")
    s.add_argument("--records", required=True)
    s.add_argument("--n-eval", type=int, required=True, help="held-out evaluation templates per record")
    s.add_argument("--seed", type=int, default=0, help="seed of the split")
    s.add_argument("--out", required=True)
    s.add_argument("--out-report", help="also write counts (candidates, kept, per rejection reason) as JSON")
    s.add_argument("--generator", choices=["template", "lm"], default="template",
                   help="template: the records' own paraphrase templates; lm: a causal LM writes more "
                        "(edit_retention.paraphrase_lm)")
    g = s.add_argument_group("lm generator (defaults: edit_retention.paraphrase_lm.LMArgs)")
    g.add_argument("--model", help="prepared model folder that writes the paraphrases")
    g.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    g.add_argument("--n-candidates", type=int, default=None, help="continuations sampled per record")
    g.add_argument("--max-new-tokens", type=int, default=None, help="per continuation (at most 128)")
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--lm-seed", dest="lm_seed", type=int, default=None, help="sampling seed")
    g.add_argument("--batch-size", type=int, default=None, help="records per generate call")
    g.add_argument("--mode", choices=["add", "replace"], default=None,
                   help="add the generated templates to the records' own, or replace these")
    g.add_argument("--evaluate-from", choices=["templates", "all"], default=None,
                   help="templates: held-out evaluation templates are hand-written ones (generated "
                        "ones only augment); all: split the pooled templates")
    s = add("corpus", "build the unrelated-text corpus, filtered against the facts")
    s.add_argument("--source", type=_json, required=True)
    s.add_argument("--records", required=True)
    required(s, "--n-train", "--n-eval", type=int)
    s.add_argument("--seed", type=int, default=0)
    required(s, "--out-train", "--out-eval")
    s.add_argument("--out-meta")
    s = add("task-data", "build a fine-tuning task's train / held-out examples, filtered against the facts")
    s.add_argument("--type", required=True, help="task type (causal_lm, instruction, math, classification, qa)")
    s.add_argument("--source", type=_json, required=True, help="task source JSON (builtin | file | hf)")
    s.add_argument("--records", required=True)
    required(s, "--n-train", "--n-eval", type=int)
    s.add_argument("--seed", type=int, default=0)
    required(s, "--out-train", "--out-eval", "--out-meta")


def _model_stages(add, sub) -> None:
    """The jobs that load a prepared model: shared options first, then each stage's own."""
    for name, help in (("select", "pick edit and intrinsic control facts the base model knows"),
                       ("stats", "second-moment statistics of layers' MLP keys, one pass for all"),
                       ("train-mend", "train MEND's hypernetwork on facts outside the study's sets"),
                       ("edit", "apply an editor; write weight deltas and a log"),
                       ("edit-health", "measure whether an edit left the model whole (health.py)"),
                       ("finetune", "fine-tune a (edited) model on a task"),
                       ("evaluate", "score edited and control facts")):
        s = add(name, help)
        s.add_argument("--model", required=True, help="prepared model folder")
        s.add_argument("--device", default="cpu", help="cpu | cuda | auto")
        s.add_argument("--mem-mb", type=int, default=0,
                       help="memory reserved for this job (MB; Snakemake's resources.mem_mb) that \"auto\" "
                            "batch sizes fill on CPU; 0 = the machine's (on CUDA: the GPU's memory)")
        if name in ("select", "evaluate"):
            s.add_argument("--batch-size", type=batch_size_arg, default=32, help="items per pass, or auto")
    s = sub.choices["select"]
    s.add_argument("--records", required=True)
    required(s, "--n-edit", "--n-control", type=int)
    s.add_argument("--all-facts", action="store_true",
                   help="draw from all facts, not only those the base model knows (random test models)")
    s.add_argument("--seed", type=int, default=0)
    for o in ("--out-edit", "--out-control", "--out-scores"):
        s.add_argument(o, required=True)
    s.add_argument("--score-cache", help="scores kept across runs (JSONL; select.py), e.g. beside --out-scores")
    s = sub.choices["stats"]
    s.add_argument("--corpus", required=True, help="JSONL with a 'text' field")
    s.add_argument("--layers", type=int, nargs="+", required=True,
                   help="layers whose statistics one pass over the corpus computes")
    s.add_argument("--n-samples", type=int, default=1000)
    s.add_argument("--max-len", type=int, default=128)
    s.add_argument("--batch-size", type=batch_size_arg, default=8, help="texts per pass, or auto")
    s.add_argument("--out-dir", required=True, help="folder of the files layer<N>.safetensors, one per layer")
    s = sub.choices["train-mend"]
    s.add_argument("--records", required=True, help="the fact set (JSONL)")
    s.add_argument("--exclude", nargs="*", default=[], help="record files whose case_ids are left out (edit, control)")
    s.add_argument("--hparams", type=_json, default={}, help="mend overrides (JSON), applied last")
    s.add_argument("--hparams-set", help="versioned hyperparameter file hparams/mend/<set>.yaml")
    s.add_argument("--n-val", type=int, default=20, help="held-out training facts scored before/after")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="hypernetwork folder")
    s = sub.choices["edit-health"]
    required(s, "--edit", "--edited", "--control", "--texts", "--out")
    s.add_argument("--n-texts", type=int, default=32, help="held-out passages for the perplexity ratio")
    s.add_argument("--batch-size", type=int, default=32, help="prompts per greedy pass")
    s = sub.choices["edit"]
    s.add_argument("--editor", required=True)
    s.add_argument("--hparams", type=_json, default={}, help="overrides (JSON), applied last")
    s.add_argument("--hparams-set", help="versioned hyperparameter file hparams/<editor>/<set>.yaml")
    s.add_argument("--requests", required=True, help="records to edit (JSONL)")
    s.add_argument("--paraphrases", required=True)
    s.add_argument("--k", type=int, default=0, help="augmentation paraphrases per edit")
    s.add_argument("--stats", nargs="*", default=[])
    s.add_argument("--regime", choices=["batch", "sequential", "single", "groups"], default="batch",
                   help="batch: all facts at once; sequential: --batch-size facts at a time, one after "
                        "another; single: each fact alone from the unedited model; groups: --batch-size "
                        "facts per fresh copy of the unedited model, dealt round-robin over relations")
    s.add_argument("--batch-size", type=int, default=0,
                   help="facts per call in the sequential regime (0 = all); facts per model in the groups regime")
    s.add_argument("--out", required=True)
    s = sub.choices["finetune"]
    s.add_argument("--edit", help="edit folder whose deltas are applied first")
    s.add_argument("--task-type", default="causal_lm",
                   help="causal_lm | instruction | math | classification | qa (see edit_retention.tasks)")
    s.add_argument("--train", required=True, help="training examples (JSONL; a 'text' field for causal_lm)")
    s.add_argument("--eval", required=True, help="held-out examples (JSONL)")
    s.add_argument("--params", type=_json, default={}, help="FinetuneArgs (JSON)")
    s.add_argument("--method", type=_method_arg, default=None,
                   help='"full" | "lora" | "dora" (JSON string) or {"type": "lora", "r": 8, "alpha": 16, '
                        '"dropout": 0.0, "target_modules": ["q_proj", "v_proj"] | "all-linear"}')
    s.add_argument("--freeze", default="none",
                   help="none | edited | non_edited (= edited: train only the non-edited layers) | only_edited "
                        "| layers:A-B[,C...] (explicit blocks to freeze)")
    s.add_argument("--seed", type=int, default=0)
    required(s, "--out-model", "--out-metrics")
    s.add_argument("--out-log", required=True, help="full training log (JSON)")
    s.add_argument("--out-steps", help="folder for checkpoint scores step-<N>.jsonl (+ index.json)")
    s.add_argument("--edited", help="edited facts (needed for an edit in the single/groups regime)")
    s.add_argument("--control", help="control facts (single/groups regime)")
    s.add_argument("--paraphrases", help="paraphrase splits (single/groups regime)")
    s.add_argument("--batch-size", type=batch_size_arg, default=32,
                   help="scoring batch size (single/groups regime, checkpoints), or auto")
    s = sub.choices["evaluate"]
    s.add_argument("--edit", help="edit folder whose deltas are applied first")
    required(s, "--edited", "--control", "--paraphrases", "--out")
    for name in ("evaluate", "finetune"):      # every phase's facts are scored by one of the two
        sub.choices[name].add_argument(
            "--generation-tokens", type=int, default=0,
            help="new tokens of each fact prompt's greedy continuation (protocols.generation_contains; 0 = none)")


def _result_stages(add) -> None:
    """Summary, claims, figures, the report and the config check."""
    s = add("summarize", "summary.csv, metrics.json, cells.csv (CIs), facts.csv, problems.csv")
    s.add_argument("--cell", action="append", required=True,
                   help="model=..,editor=..,task=..,remedy=..,seed=..,base=F,edited=F,step-<N>=F,...,"
                        "finetuned=F,task_metrics=F,health=F")
    required(s, "--out-csv", "--out-metrics")
    s.add_argument("--out-health", help="edit-health table with the gate's verdicts (default: health.csv beside "
                   "--out-csv)")
    s.add_argument("--health", type=_json, default={}, help="the study's health config (JSON): the gate's thresholds")
    s.add_argument("--out-cells", help="cell table with CIs (default: cells.csv beside --out-csv)")
    s.add_argument("--out-facts", help="per-fact units (default: facts.csv beside --out-csv)")
    s.add_argument("--out-problems", help="named problems (default: problems.csv beside --out-csv)")
    s.add_argument("--records", action="append", default=[],
                   help="fact records JSONL giving each case_id its relation (repeatable)")
    s.add_argument("--remedies", type=_json, help="the study's remedies config (JSON): paraphrase_k, freeze, "
                   "method of each remedy; claims find their cells by these")
    s.add_argument("--tasks", type=_json, help="the study's tasks config (JSON): steps of the final phase")
    s.add_argument("--allow-missing", action="store_true",
                   help="leave out (and name under problems) cells whose files are missing or unreadable")
    s.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates per cell")
    s.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    s = add("analyze", "claims table and elasticity fits from cells.csv and facts.csv")
    required(s, "--cells", "--facts")
    s.add_argument("--health", help="health.csv (summarize): claims resting on edits that fail the gate are withheld")
    s.add_argument("--out-claims", required=True, help="claims.csv (every scope and contrast)")
    s.add_argument("--out-claims-json", required=True, help="primary verdicts (DVC metrics)")
    s.add_argument("--out-elasticity", required=True, help="fitted curves (JSON)")
    s.add_argument("--out-elasticity-csv", help="curve points (DVC plots)")
    s.add_argument("--out-curves", help="retention vs fine-tuning step, baseline remedies (DVC plots)")
    s.add_argument("--out-effects", help="effect and 95%% CI of every claim contrast (DVC plots)")
    s.add_argument("--n-boot", type=int, default=1000)
    s.add_argument("--n-perm", type=int, default=2000)
    s.add_argument("--n-boot-fit", type=int, default=300)
    s.add_argument("--margin", type=float, default=0.05, help="smallest retention difference that matters")
    s.add_argument("--seed", type=int, default=0)
    s = add("figure", "render one figure from cells.csv")
    s.add_argument("name", help="retention_by_editor | retention_vs_steps | retention_vs_k | freezing | "
                                "methods | retention_vs_edit_size | retention_vs_tokens")
    s.add_argument("--cells", required=True)
    s.add_argument("--fits", help="elasticity.json (fitted curves drawn where present)")
    required(s, "--out-png", "--out-pdf")
    s = add("figures", "render every figure from cells.csv")
    s.add_argument("--cells", required=True)
    s.add_argument("--fits")
    s.add_argument("--out-dir", required=True)
    s = add("report", "results.md: claims, headline numbers with CIs, grid, versions, problems")
    required(s, "--cells", "--claims")
    s.add_argument("--elasticity")
    s.add_argument("--problems")
    s.add_argument("--health", help="health.csv: the edit-health table and the gate's verdicts")
    s.add_argument("--config", type=_json, help="the study config (JSON)")
    s.add_argument("--models", nargs="*", default=[], help="prepared model folders (source.json)")
    s.add_argument("--facts", nargs="*", default=[], help="fact files (records, hashed)")
    s.add_argument("--git-dir", default=".", help="where to read the commit")
    s.add_argument("--out", required=True)
    s.add_argument("--out-config", help="also write the study config as JSON (for the Snakemake report)")
    s = add("check-config", "validate a study config without running anything")
    s.add_argument("config")
