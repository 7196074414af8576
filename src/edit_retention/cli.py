"""Command line: one subcommand per pipeline stage; Snakemake rules call these.

Usage::

    python -m edit_retention <stage> [options]       # --help on any stage

Stages: prepare-model, prepare-facts, paraphrases, corpus, select, stats, edit,
finetune, evaluate, summarize, figures, check-config. Structured options (sources,
hyperparameters) are JSON strings; every output is written atomically.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from .io import InputError, read_json, read_jsonl, write_json, write_jsonl

log = logging.getLogger("edit_retention")


def _json(s: str):
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from e


def cmd_prepare_model(a):
    from .models import prepare_model
    prepare_model(a.source, a.out)


def cmd_prepare_facts(a):
    from .facts import load_facts
    records = load_facts(a.source)
    write_jsonl(a.out, records)
    log.info("wrote %d facts to %s", len(records), a.out)


def _records(path):
    from .records import validate_records
    return validate_records(read_jsonl(path), path)


def cmd_paraphrases(a):
    from .paraphrase import split_paraphrases
    write_jsonl(a.out, split_paraphrases(_records(a.records), a.n_eval, a.seed))


def cmd_corpus(a):
    from .corpus import build_corpus
    out = build_corpus(a.source, _records(a.records), a.n_train, a.n_eval, a.seed)
    write_jsonl(a.out_train, [{"text": t} for t in out["train"]])
    write_jsonl(a.out_eval, [{"text": t} for t in out["eval"]])
    if a.out_meta:
        write_json(a.out_meta, out["meta"])


def _texts(path):
    rows = read_jsonl(path)
    for i, r in enumerate(rows):
        if not isinstance(r.get("text"), str):
            raise InputError(f"{path}: record {i}: missing string field 'text'")
    return [r["text"] for r in rows]


def _load(a, with_edit: bool = True):
    """(model, tok, edit): the edit's deltas are applied, except in the single regime
    (one delta set per fact; see ``single.py``), where the caller applies them per fact."""
    from .models import load_model
    model, tok = load_model(a.model, device=a.device)
    edit = None
    if with_edit and getattr(a, "edit", None):
        from .editors import apply_deltas, load_edit
        edit = load_edit(a.edit)
        if edit.log.get("regime") != "single":
            apply_deltas(model, edit.deltas)
    return model, tok, edit


def _is_single(edit) -> bool:
    return edit is not None and edit.log.get("regime") == "single"


def cmd_select(a):
    from .select import known_mask, split_known
    records = _records(a.records)
    model, tok, _ = _load(a, with_edit=False)
    mask, scores = known_mask(model, tok, records, a.batch_size)
    if a.all_facts:  # random test models know nothing; keep the pipeline shape
        mask = [True] * len(records)
    edit, control = split_known(records, mask, a.n_edit, a.n_control, a.seed, where=f"select ({a.records})")
    write_jsonl(a.out_scores, scores)
    write_jsonl(a.out_edit, edit)
    write_jsonl(a.out_control, control)
    log.info("base model knows %d/%d facts; %d edit, %d control", sum(mask), len(records), len(edit), len(control))


def cmd_stats(a):
    from .models import check_layers
    from .stats import compute_mom2, save_stats
    model, tok, _ = _load(a, with_edit=False)
    layers = check_layers(model, [a.layer], where="stats --layer")
    texts = _texts(a.corpus)[: a.n_samples]
    t0 = time.time()
    stats = compute_mom2(model, tok, texts, layers, max_len=a.max_len, batch_size=a.batch_size)
    save_stats(a.out, stats, {"layer": a.layer, "n_samples": len(texts), "max_len": a.max_len,
                              "corpus": a.corpus, "seconds": time.time() - t0})


def edit_requests(edit_records: list[dict], paraphrases: list[dict], k: int) -> list[dict]:
    """Editor requests: each fact with its first k augmentation paraphrases."""
    aug = {p["case_id"]: p["augment"] for p in paraphrases}
    reqs = []
    for r in edit_records:
        a = aug.get(r["case_id"])
        if a is None:
            raise InputError(f"paraphrases: no row for case_id {r['case_id']!r}")
        if len(a) < k:
            raise InputError(f"paraphrases: case_id {r['case_id']!r} has {len(a)} augmentation paraphrases, k={k} asked")
        reqs.append({"case_id": r["case_id"], "subject": r["subject"], "prompt": r["prompt"],
                     "target_new": r["target_new"], "target_true": r["target_true"], "aug_prompts": a[:k]})
    return reqs


def cmd_edit(a):
    from .editors import edited_layers, get_editor, make_hparams, save_edit
    from .models import check_layers
    from .stats import load_stats
    hp = make_hparams(a.editor, a.hparams, a.hparams_set)
    model, tok, _ = _load(a, with_edit=False)
    check_layers(model, edited_layers(hp), where=f"editors.{a.editor} layers")
    stats = None
    if a.stats:
        stats = {}
        for p in a.stats:
            s, meta = load_stats(p)
            stats.update(s)
    from .editors.regimes import run_regime
    reqs = edit_requests(_records(a.requests), read_jsonl(a.paraphrases), a.k)
    res = run_regime(get_editor(a.editor), model, tok, reqs, hp, stats, a.regime, a.batch_size)
    res.log.update({"k": a.k, "n_requests": len(reqs)})
    save_edit(res, a.out)


def _frozen_layers(a, edit) -> list[int]:
    if a.freeze != "edited":
        return []
    if edit is None:
        raise InputError("finetune: --freeze edited needs --edit (the edit's log names the layers)")
    return edit.log["edited_layers"]


SINGLE_SCORES = "single_scores.jsonl"


def cmd_finetune(a):
    from .finetune import FinetuneArgs, finetune
    from .io import atomic_dir
    args = FinetuneArgs.from_dict(a.params, where="finetune params")
    model, tok, edit = _load(a)
    frozen = _frozen_layers(a, edit)
    if _is_single(edit):
        # One fine-tune per fact; the per-fact models are scored here and not kept.
        from .editors.regimes import single_deltas
        from .single import finetune_single
        for opt in ("edited", "control", "paraphrases"):
            if not getattr(a, opt):
                raise InputError(f"finetune: an edit in the single regime needs --{opt} (facts are scored per fine-tune)")
        para = {p["case_id"]: p for p in read_jsonl(a.paraphrases)}
        rows, logs = finetune_single(model, tok, _records(a.edited), _records(a.control), para,
                                     single_deltas(edit), _texts(a.train), _texts(a.eval), args, a.seed,
                                     frozen, a.batch_size)
        with atomic_dir(a.out_model) as tmp:
            write_jsonl(tmp / SINGLE_SCORES, rows)
        keys = ("eval_loss", "eval_perplexity", "eval_loss_before", "eval_perplexity_before")
        write_json(a.out_metrics, {k: sum(g[k] for g in logs) / len(logs) for k in keys})
        write_json(a.out_log, {"regime": "single", "runs": logs})
        return
    out = finetune(model, tok, _texts(a.train), _texts(a.eval), args, a.seed, frozen)
    with atomic_dir(a.out_model) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    # Task scores (flat numbers) for the summary; the full training log beside them.
    write_json(a.out_metrics, {k: out[k] for k in ("eval_loss", "eval_perplexity",
                                                  "eval_loss_before", "eval_perplexity_before")})
    write_json(a.out_log, out)


def cmd_evaluate(a):
    from pathlib import Path

    from .evaluate import evaluate
    if (Path(a.model) / SINGLE_SCORES).exists():   # single-regime fine-tunes, scored in the job
        write_jsonl(a.out, read_jsonl(Path(a.model) / SINGLE_SCORES))
        return
    model, tok, edit = _load(a)
    para = {p["case_id"]: p for p in read_jsonl(a.paraphrases)}
    if _is_single(edit):
        from .editors.regimes import single_deltas
        from .single import evaluate_single
        rows = evaluate_single(model, tok, _records(a.edited), _records(a.control), para,
                               single_deltas(edit), a.batch_size)
    else:
        rows = evaluate(model, tok, _records(a.edited), _records(a.control), para, a.batch_size)
    write_jsonl(a.out, rows)


def _cell(s: str) -> dict:
    cell = dict(kv.split("=", 1) for kv in s.split(","))
    phases = {p: cell.pop(p) for p in ("base", "edited", "finetuned") if p in cell}
    cell["phases"] = phases
    cell["seed"] = int(cell.get("seed", 0))
    return cell


def cmd_summarize(a):
    from .summarize import summarize, write_summary
    from pathlib import Path

    from .io import atomic_path
    from .summarize import retention_table
    df = summarize([_cell(c) for c in a.cell])
    write_summary(df, a.out_csv, a.out_metrics)
    with atomic_path(Path(a.out_csv).with_name("retention.csv"), suffix=".csv") as tmp:
        retention_table(df).to_csv(tmp, index=False)


def cmd_figures(a):
    from .plots import make_figures
    make_figures(a.summary, a.out_dir)


def cmd_check_config(a):
    import yaml
    from .config import check_study
    with open(a.config) as f:
        check_study(yaml.safe_load(f), where=a.config)
    print(f"{a.config}: ok")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edit_retention", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, fn, help):
        s = sub.add_parser(name, help=help, description=help)
        s.set_defaults(fn=fn)
        return s

    s = add("prepare-model", cmd_prepare_model, "materialise a model source as safetensors")
    s.add_argument("--source", type=_json, required=True, help="model source JSON")
    s.add_argument("--out", required=True)
    s = add("prepare-facts", cmd_prepare_facts, "load a fact source into records.jsonl")
    s.add_argument("--source", type=_json, required=True, help="fact source JSON")
    s.add_argument("--out", required=True)
    s = add("paraphrases", cmd_paraphrases, "split paraphrases into augmentation / evaluation")
    s.add_argument("--records", required=True)
    s.add_argument("--n-eval", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s = add("corpus", cmd_corpus, "build the unrelated-text corpus, filtered against the facts")
    s.add_argument("--source", type=_json, required=True)
    s.add_argument("--records", required=True)
    s.add_argument("--n-train", type=int, required=True)
    s.add_argument("--n-eval", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out-train", required=True)
    s.add_argument("--out-eval", required=True)
    s.add_argument("--out-meta")
    for name, fn, help in (("select", cmd_select, "pick edit and intrinsic control facts the base model knows"),
                           ("stats", cmd_stats, "second-moment statistics of one layer's MLP keys"),
                           ("edit", cmd_edit, "apply an editor; write weight deltas and a log"),
                           ("finetune", cmd_finetune, "fine-tune a (edited) model on a task"),
                           ("evaluate", cmd_evaluate, "score edited and control facts")):
        s = add(name, fn, help)
        s.add_argument("--model", required=True, help="prepared model folder")
        s.add_argument("--device", default="cpu", help="cpu | cuda | auto")
        if name in ("select", "evaluate"):
            s.add_argument("--batch-size", type=int, default=32)
    s = sub.choices["select"]
    s.add_argument("--records", required=True)
    s.add_argument("--n-edit", type=int, required=True)
    s.add_argument("--n-control", type=int, required=True)
    s.add_argument("--all-facts", action="store_true",
                   help="draw from all facts, not only those the base model knows (random test models)")
    s.add_argument("--seed", type=int, default=0)
    for o in ("--out-edit", "--out-control", "--out-scores"):
        s.add_argument(o, required=True)
    s = sub.choices["stats"]
    s.add_argument("--corpus", required=True, help="JSONL with a 'text' field")
    s.add_argument("--layer", type=int, required=True)
    s.add_argument("--n-samples", type=int, default=1000)
    s.add_argument("--max-len", type=int, default=128)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--out", required=True)
    s = sub.choices["edit"]
    s.add_argument("--editor", required=True)
    s.add_argument("--hparams", type=_json, default={}, help="overrides (JSON), applied last")
    s.add_argument("--hparams-set", help="versioned hyperparameter file hparams/<editor>/<set>.yaml")
    s.add_argument("--requests", required=True, help="records to edit (JSONL)")
    s.add_argument("--paraphrases", required=True)
    s.add_argument("--k", type=int, default=0, help="augmentation paraphrases per edit")
    s.add_argument("--stats", nargs="*", default=[])
    s.add_argument("--regime", choices=["batch", "sequential", "single"], default="batch",
                   help="batch: all facts at once; sequential: --batch-size facts at a time, one after "
                        "another; single: each fact alone from the unedited model")
    s.add_argument("--batch-size", type=int, default=0, help="facts per call in the sequential regime (0 = all)")
    s.add_argument("--out", required=True)
    s = sub.choices["finetune"]
    s.add_argument("--edit", help="edit folder whose deltas are applied first")
    s.add_argument("--train", required=True)
    s.add_argument("--eval", required=True)
    s.add_argument("--params", type=_json, default={})
    s.add_argument("--freeze", choices=["none", "edited"], default="none")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out-model", required=True)
    s.add_argument("--out-metrics", required=True)
    s.add_argument("--out-log", required=True, help="full training log (JSON)")
    s.add_argument("--edited", help="edited facts (needed for an edit in the single regime)")
    s.add_argument("--control", help="control facts (single regime)")
    s.add_argument("--paraphrases", help="paraphrase splits (single regime)")
    s.add_argument("--batch-size", type=int, default=32, help="scoring batch size (single regime)")
    s = sub.choices["evaluate"]
    s.add_argument("--edit", help="edit folder whose deltas are applied first")
    s.add_argument("--edited", required=True)
    s.add_argument("--control", required=True)
    s.add_argument("--paraphrases", required=True)
    s.add_argument("--out", required=True)
    s = add("summarize", cmd_summarize, "tidy summary.csv and metrics.json from scores")
    s.add_argument("--cell", action="append", required=True,
                   help="model=..,editor=..,task=..,remedy=..,seed=..,base=F,edited=F,finetuned=F,task_metrics=F")
    s.add_argument("--out-csv", required=True)
    s.add_argument("--out-metrics", required=True)
    s = add("figures", cmd_figures, "render figures from summary.csv")
    s.add_argument("--summary", required=True)
    s.add_argument("--out-dir", required=True)
    s = add("check-config", cmd_check_config, "validate a study config without running anything")
    s.add_argument("config")
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    a = build_parser().parse_args(argv)
    try:
        a.fn(a)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
