"""Command line: one subcommand per pipeline stage; Snakemake rules call these.

Usage::

    python -m edit_retention <stage> [options]       # --help on any stage

Stages: prepare-model, prepare-facts, paraphrases, corpus, task-data, select, stats, train-mend, edit,
finetune, evaluate, summarize, analyze, figure, figures, report, check-config. Structured
options (sources, hyperparameters) are JSON strings; every output is written atomically.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from .io import InputError, read_json, read_jsonl, write_json, write_jsonl
from .memory import batch_size_arg

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
    records = _records(a.records)
    if a.generator == "template":
        from .paraphrase import split_paraphrases
        if a.model:
            raise InputError("paraphrases: --model is only read by --generator lm")
        rows = split_paraphrases(records, a.n_eval, a.seed)
        report = {"generator": "template", "n_records": len(rows)}
    else:
        from .models import load_model
        from .paraphrase_lm import LMArgs, lm_paraphrases
        if not a.model:
            raise InputError("paraphrases: --generator lm needs --model (a prepared model folder)")
        opts = {k: getattr(a, k) for k in LMArgs.__dataclass_fields__ if k != "seed"}
        args = LMArgs.from_dict({**opts, "seed": a.lm_seed}, where="paraphrases")
        model, tok = load_model(a.model, device=a.device)
        rows, report = lm_paraphrases(model, tok, records, a.n_eval, a.seed, args)
        report["model"] = str(a.model)
        log.info("lm paraphrases: %d of %d candidates kept (%.0f%%); rejected: %s; %d records got none",
                 report["kept"], report["n_candidates"], 100 * report["keep_rate"],
                 json.dumps(report["rejected"]), report["records_without_generated"])
    write_jsonl(a.out, rows)
    if a.out_report:
        write_json(a.out_report, {**report, "records": a.records, "n_eval": a.n_eval, "split_seed": a.seed})


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


def mend_train_requests(records: list[dict], exclude: set[str]) -> list[dict]:
    """MEND's edit-training split: every fact outside the study's edit and control sets, its
    paraphrase templates as aug prompts and its neighbourhood prompts as locality texts."""
    out = []
    for r in records:
        if r["case_id"] in exclude:
            continue
        out.append({"case_id": r["case_id"], "subject": r["subject"], "prompt": r["prompt"],
                    "target_new": r["target_new"], "target_true": r["target_true"],
                    "aug_prompts": list(r["paraphrase_prompts"][:1]),
                    "locality_prompts": [n["prompt"] for n in r["neighborhood_prompts"]]})
    if not out:
        raise InputError("train-mend: no facts are left for MEND's training split once the edit and "
                         "control sets are excluded; use a larger fact set")
    return out


def cmd_train_mend(a):
    from .editors import make_hparams
    from .mend_train import save_hypernet, train_mend
    hp = make_hparams("mend", a.hparams, a.hparams_set)
    model, tok, _ = _load(a, with_edit=False)
    exclude = {r["case_id"] for p in a.exclude for r in read_jsonl(p)}
    reqs = mend_train_requests(_records(a.records), exclude)
    n_val = min(a.n_val, len(reqs) // 5)
    train, val = reqs[n_val:], reqs[:n_val]
    tensors, config = train_mend(model, tok, train, hp, a.seed, val_requests=val or None)
    save_hypernet(a.out, tensors, config)
    log.info("MEND hypernetwork: %d training / %d held-out facts, %.0f s", len(train), len(val),
             config["train"]["seconds"])


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
    from .editors.passes import count_passes
    from .editors.regimes import run_regime
    reqs = edit_requests(_records(a.requests), read_jsonl(a.paraphrases), a.k)
    with count_passes(model) as passes:
        res = run_regime(get_editor(a.editor), model, tok, reqs, hp, stats, a.regime, a.batch_size)
    res.log.update({"k": a.k, "n_requests": len(reqs), "passes": passes,
                    "seconds_per_request": res.log["seconds"] / max(len(reqs), 1)})
    save_edit(res, a.out)


def _freeze(a, model, edit) -> tuple[list[int], bool]:
    """(frozen blocks, non-block parameters frozen too) for --freeze; the edited layers
    come from the edit's own log."""
    from .finetune import resolve_freeze
    from .models import num_layers
    edited = edit.log["edited_layers"] if edit is not None else None
    return resolve_freeze(a.freeze, edited, num_layers(model), where="finetune --freeze")


def _task_examples(task, path):
    """Training / held-out examples of a task from a JSONL (passages for causal_lm)."""
    if task.type == "causal_lm":
        return _texts(path)
    from .tasks import check_examples
    return check_examples(task, read_jsonl(path), path)


SINGLE_SCORES = "single_scores.jsonl"


def _method_arg(s: str):
    """--method: a bare name (lora) or JSON ("lora", {"type": "lora", ...})."""
    return s if s in ("full", "lora", "dora") else _json(s)


def cmd_task_data(a):
    from .tasks import build_task_data, get_task
    task = get_task(a.type)
    out = build_task_data(task, a.source, _records(a.records), a.n_train, a.n_eval, a.seed)
    write_jsonl(a.out_train, out["train"])
    write_jsonl(a.out_eval, out["eval"])
    write_json(a.out_meta, out["meta"])
    log.info("task %s: %d train, %d held-out examples", a.type, len(out["train"]), len(out["eval"]))


def cmd_finetune(a):
    from .finetune import FinetuneArgs, MethodSpec, finetune, task_metrics
    from .io import atomic_dir
    from .tasks import get_task
    args = FinetuneArgs.from_dict(a.params, where="finetune params")
    method = MethodSpec.parse(a.method, where="finetune --method")
    task = get_task(a.task_type)
    train, held = _task_examples(task, a.train), _task_examples(task, a.eval)
    model, tok, edit = _load(a)
    frozen, non_layer = _freeze(a, model, edit)
    kw = {"task": task, "method": method, "freeze_non_layer": non_layer}
    ckpt_steps = args.checkpoint_steps()
    if ckpt_steps and not a.out_steps:
        raise InputError("finetune: checkpoint_every > 0 needs --out-steps (a folder for the checkpoint scores)")
    if _is_single(edit):
        # One fine-tune per fact; the per-fact models are scored here and not kept.
        from .editors.regimes import single_deltas
        from .single import finetune_single
        for opt in ("edited", "control", "paraphrases"):
            if not getattr(a, opt):
                raise InputError(f"finetune: an edit in the single regime needs --{opt} (facts are scored per fine-tune)")
        para = {p["case_id"]: p for p in read_jsonl(a.paraphrases)}
        step_rows: dict = {}
        rows, logs = finetune_single(model, tok, _records(a.edited), _records(a.control), para,
                                     single_deltas(edit), train, held, args, a.seed,
                                     frozen, a.batch_size, checkpoint_rows=step_rows, **kw)
        with atomic_dir(a.out_model) as tmp:
            write_jsonl(tmp / SINGLE_SCORES, rows)
        if a.out_steps:
            with atomic_dir(a.out_steps) as tmp:
                for step, srows in sorted(step_rows.items()):
                    write_jsonl(tmp / f"step-{step}.jsonl", srows)
                write_json(tmp / "index.json", {"steps": sorted(step_rows)})
        flat = [task_metrics(g) for g in logs]
        write_json(a.out_metrics, {k: sum(f[k] for f in flat) / len(flat) for k in flat[0]})
        write_json(a.out_log, {"regime": "single", "runs": logs})
        return
    on_checkpoint, step_files = None, {}
    if ckpt_steps:
        import tempfile
        from pathlib import Path

        from .evaluate import build_items, score_items
        for opt in ("edited", "control", "paraphrases"):
            if not getattr(a, opt):
                raise InputError(f"finetune: checkpoints need --{opt} (the facts are scored at each checkpoint)")
        items = build_items(_records(a.edited), _records(a.control),
                            {p["case_id"]: p for p in read_jsonl(a.paraphrases)})
        scratch = Path(tempfile.mkdtemp(prefix=".steps.", dir=Path(a.out_metrics).parent))

        def on_checkpoint(step, net):
            f = scratch / f"step-{step}.jsonl"
            write_jsonl(f, score_items(net, tok, items, a.batch_size, progress=False))
            step_files[step] = f
            log.info("checkpoint at step %d scored", step)
    try:
        out = finetune(model, tok, train, held, args, a.seed, frozen, on_checkpoint=on_checkpoint, **kw)
        with atomic_dir(a.out_model) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
        if a.out_steps:
            import shutil
            with atomic_dir(a.out_steps) as tmp:
                for step, f in sorted(step_files.items()):
                    shutil.move(str(f), tmp / f.name)
                write_json(tmp / "index.json", {"steps": sorted(step_files)})
    finally:
        if ckpt_steps:
            import shutil
            shutil.rmtree(scratch, ignore_errors=True)
    # Task scores (flat numbers) for the summary; the full training log beside them.
    write_json(a.out_metrics, task_metrics(out))
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
    """Parse ``--cell k=v,...``: labels, phase files (base, edited, step-<N>, finetuned)
    and task_metrics; phases keep the order base, edited, step-N by N, finetuned."""
    import re as _re

    from .inference import phase_order
    try:
        cell = dict(kv.split("=", 1) for kv in s.split(","))
    except ValueError:
        raise InputError(f"--cell {s!r}: expected comma-separated key=value pairs") from None
    keys = [k for k in cell if k in ("base", "edited", "finetuned") or _re.fullmatch(r"step-\d+", k)]
    cell["phases"] = {p: cell.pop(p) for p in sorted(keys, key=phase_order)}
    try:
        cell["seed"] = int(cell.get("seed", 0))
    except ValueError:
        raise InputError(f"--cell {s!r}: seed {cell.get('seed')!r} is not an integer") from None
    return cell


def cmd_summarize(a):
    from pathlib import Path

    from .io import atomic_path
    from .summarize import relations_of, retention_table, summarize_all, write_results
    res = summarize_all([_cell(c) for c in a.cell], relations_of(a.records), a.remedies, a.tasks,
                        allow_missing=a.allow_missing, n_boot=a.n_boot, seed=a.seed)
    out = Path(a.out_csv).parent
    write_results(res, a.out_csv, a.out_metrics, a.out_cells or out / "cells.csv",
                  a.out_facts or out / "facts.csv", a.out_problems or out / "problems.csv")
    with atomic_path(Path(a.out_csv).with_name("retention.csv"), suffix=".csv") as tmp:
        retention_table(res.summary).to_csv(tmp, index=False)
    for _, p in res.problems.iterrows():
        log.warning("problem: %s", " ".join(str(v) for v in p.to_dict().values() if str(v) not in ("", "nan")))


def cmd_analyze(a):
    from .inference import elasticity, evaluate_claims
    from .io import atomic_path
    from .summarize import read_table
    cells, units = read_table(a.cells), read_table(a.facts)
    claims = evaluate_claims(units, cells, n_boot=a.n_boot, n_perm=a.n_perm, seed=a.seed, margin=a.margin)
    with atomic_path(a.out_claims, suffix=".csv") as tmp:
        claims.to_csv(tmp, index=False, na_rep="NaN", float_format="%.6g")
    primary = claims[claims["primary"]]
    write_json(a.out_claims_json, {r["claim"]: {"verdict": r["verdict"], **{
        k: (None if r[k] != r[k] else float(r[k])) for k in ("effect", "ci_low", "ci_high", "p")},
        "n_a": int(r["n_a"]), "n_b": int(r["n_b"])} for _, r in primary.iterrows()})
    curves = elasticity(units, cells, n_boot=a.n_boot_fit, seed=a.seed)
    write_json(a.out_elasticity, {"curves": curves})
    if a.out_elasticity_csv:
        import pandas as pd
        rows = [dict(kind=c["kind"], curve="/".join(str(c.get(k)) for k in ("editor", "remedy", "knowledge")
                                                    if c.get(k) is not None), x=p["x"], retention=p["retention"], n=p["n"])
                for c in curves for p in c["points"]]
        with atomic_path(a.out_elasticity_csv, suffix=".csv") as tmp:
            pd.DataFrame(rows, columns=["kind", "curve", "x", "retention", "n"]).to_csv(tmp, index=False)
    from .summarize import curve_table, effect_table
    for out, table in ((a.out_curves, lambda: curve_table(cells)), (a.out_effects, lambda: effect_table(claims))):
        if out:
            with atomic_path(out, suffix=".csv") as tmp:
                table().to_csv(tmp, index=False, float_format="%.6g")


def cmd_figure(a):
    from .plots import make_figure
    make_figure(a.name, a.cells, a.out_png, a.out_pdf, fits=a.fits)


def cmd_figures(a):
    from .plots import make_figures
    make_figures(a.cells, a.out_dir, fits=a.fits)


def cmd_report(a):
    from .io import write_text
    from .report import fact_versions, git_commit, model_versions, results_markdown
    from .summarize import read_table
    problems = read_table(a.problems) if a.problems else None
    curves = read_json(a.elasticity).get("curves", []) if a.elasticity else []
    text = results_markdown(read_table(a.cells), read_table(a.claims), curves, problems, a.config or {},
                            models=model_versions(a.models), facts=fact_versions(a.facts),
                            commit=git_commit(a.git_dir))
    write_text(a.out, text)
    if a.out_config:
        write_json(a.out_config, a.config or {})


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
    s = add("paraphrases", cmd_paraphrases, "split paraphrases into augmentation / evaluation "
            "(the records' templates, or those plus / instead of ones a language model writes)")
    s.add_argument("--records", required=True)
    s.add_argument("--n-eval", type=int, required=True, help="held-out evaluation templates per record")
    s.add_argument("--seed", type=int, default=0, help="seed of the split")
    s.add_argument("--out", required=True)
    s.add_argument("--out-report", help="also write counts (candidates, kept, per rejection reason) as JSON")
    s.add_argument("--generator", choices=["template", "lm"], default="template",
                   help="template: the records' own paraphrase templates; lm: a causal LM writes more "
                        "(edit_retention.paraphrase_lm)")
    g = s.add_argument_group("lm generator")
    from .paraphrase_lm import LMArgs
    lm = LMArgs()
    g.add_argument("--model", help="prepared model folder that writes the paraphrases")
    g.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    g.add_argument("--n-candidates", type=int, default=lm.n_candidates, help="continuations sampled per record")
    g.add_argument("--max-new-tokens", type=int, default=lm.max_new_tokens, help="per continuation (at most 128)")
    g.add_argument("--temperature", type=float, default=lm.temperature)
    g.add_argument("--top-p", type=float, default=lm.top_p)
    g.add_argument("--lm-seed", dest="lm_seed", type=int, default=lm.seed, help="sampling seed")
    g.add_argument("--batch-size", type=int, default=lm.batch_size, help="records per generate call")
    g.add_argument("--mode", choices=["add", "replace"], default=lm.mode,
                   help="add the generated templates to the records' own, or replace these")
    g.add_argument("--evaluate-from", choices=["templates", "all"], default=lm.evaluate_from,
                   help="templates: held-out evaluation templates are hand-written ones (generated "
                        "ones only augment); all: split the pooled templates")
    s = add("corpus", cmd_corpus, "build the unrelated-text corpus, filtered against the facts")
    s.add_argument("--source", type=_json, required=True)
    s.add_argument("--records", required=True)
    s.add_argument("--n-train", type=int, required=True)
    s.add_argument("--n-eval", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out-train", required=True)
    s.add_argument("--out-eval", required=True)
    s.add_argument("--out-meta")
    s = add("task-data", cmd_task_data, "build a fine-tuning task's train / held-out examples, filtered against the facts")
    s.add_argument("--type", required=True, help="task type (causal_lm, instruction, math, classification, qa)")
    s.add_argument("--source", type=_json, required=True, help="task source JSON (builtin | file | hf)")
    s.add_argument("--records", required=True)
    s.add_argument("--n-train", type=int, required=True)
    s.add_argument("--n-eval", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out-train", required=True)
    s.add_argument("--out-eval", required=True)
    s.add_argument("--out-meta", required=True)
    for name, fn, help in (("select", cmd_select, "pick edit and intrinsic control facts the base model knows"),
                           ("stats", cmd_stats, "second-moment statistics of one layer's MLP keys"),
                           ("train-mend", cmd_train_mend, "train MEND's hypernetwork on facts outside the study's sets"),
                           ("edit", cmd_edit, "apply an editor; write weight deltas and a log"),
                           ("finetune", cmd_finetune, "fine-tune a (edited) model on a task"),
                           ("evaluate", cmd_evaluate, "score edited and control facts")):
        s = add(name, fn, help)
        s.add_argument("--model", required=True, help="prepared model folder")
        s.add_argument("--device", default="cpu", help="cpu | cuda | auto")
        s.add_argument("--mem-mb", type=int, default=0,
                       help="memory reserved for this job (MB; Snakemake's resources.mem_mb) that \"auto\" "
                            "batch sizes fill on CPU; 0 = the machine's (on CUDA: the GPU's memory)")
        if name in ("select", "evaluate"):
            s.add_argument("--batch-size", type=batch_size_arg, default=32, help="items per pass, or auto")
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
    s.add_argument("--batch-size", type=batch_size_arg, default=8, help="texts per pass, or auto")
    s.add_argument("--out", required=True)
    s = sub.choices["train-mend"]
    s.add_argument("--records", required=True, help="the fact set (JSONL)")
    s.add_argument("--exclude", nargs="*", default=[], help="record files whose case_ids are left out (edit, control)")
    s.add_argument("--hparams", type=_json, default={}, help="mend overrides (JSON), applied last")
    s.add_argument("--hparams-set", help="versioned hyperparameter file hparams/mend/<set>.yaml")
    s.add_argument("--n-val", type=int, default=20, help="held-out training facts scored before/after")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="hypernetwork folder")
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
    s.add_argument("--out-model", required=True)
    s.add_argument("--out-metrics", required=True)
    s.add_argument("--out-log", required=True, help="full training log (JSON)")
    s.add_argument("--out-steps", help="folder for checkpoint scores step-<N>.jsonl (+ index.json)")
    s.add_argument("--edited", help="edited facts (needed for an edit in the single regime)")
    s.add_argument("--control", help="control facts (single regime)")
    s.add_argument("--paraphrases", help="paraphrase splits (single regime)")
    s.add_argument("--batch-size", type=batch_size_arg, default=32,
                   help="scoring batch size (single regime, checkpoints), or auto")
    s = sub.choices["evaluate"]
    s.add_argument("--edit", help="edit folder whose deltas are applied first")
    s.add_argument("--edited", required=True)
    s.add_argument("--control", required=True)
    s.add_argument("--paraphrases", required=True)
    s.add_argument("--out", required=True)
    s = add("summarize", cmd_summarize, "summary.csv, metrics.json, cells.csv (CIs), facts.csv, problems.csv")
    s.add_argument("--cell", action="append", required=True,
                   help="model=..,editor=..,task=..,remedy=..,seed=..,base=F,edited=F,step-<N>=F,...,"
                        "finetuned=F,task_metrics=F")
    s.add_argument("--out-csv", required=True)
    s.add_argument("--out-metrics", required=True)
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
    s = add("analyze", cmd_analyze, "claims table and elasticity fits from cells.csv and facts.csv")
    s.add_argument("--cells", required=True)
    s.add_argument("--facts", required=True)
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
    s = add("figure", cmd_figure, "render one figure from cells.csv")
    s.add_argument("name", help="retention_by_editor | retention_vs_steps | retention_vs_k | freezing | "
                                "methods | retention_vs_edit_size")
    s.add_argument("--cells", required=True)
    s.add_argument("--fits", help="elasticity.json (fitted curves drawn where present)")
    s.add_argument("--out-png", required=True)
    s.add_argument("--out-pdf", required=True)
    s = add("figures", cmd_figures, "render every figure from cells.csv")
    s.add_argument("--cells", required=True)
    s.add_argument("--fits")
    s.add_argument("--out-dir", required=True)
    s = add("report", cmd_report, "results.md: claims, headline numbers with CIs, grid, versions, problems")
    s.add_argument("--cells", required=True)
    s.add_argument("--claims", required=True)
    s.add_argument("--elasticity")
    s.add_argument("--problems")
    s.add_argument("--config", type=_json, help="the study config (JSON)")
    s.add_argument("--models", nargs="*", default=[], help="prepared model folders (source.json)")
    s.add_argument("--facts", nargs="*", default=[], help="fact files (records, hashed)")
    s.add_argument("--git-dir", default=".", help="where to read the commit")
    s.add_argument("--out", required=True)
    s.add_argument("--out-config", help="also write the study config as JSON (for the Snakemake report)")
    s = add("check-config", cmd_check_config, "validate a study config without running anything")
    s.add_argument("config")
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    a = build_parser().parse_args(argv)
    try:
        if getattr(a, "mem_mb", None) is not None:
            from .memory import set_job_memory
            set_job_memory(a.mem_mb)
        a.fn(a)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:
        from .memory import is_out_of_memory
        if not is_out_of_memory(e):
            raise
        print(f"error: {out_of_memory_message(a, e)}", file=sys.stderr)
        return 3
    return 0


# Config settings that bound each stage's memory, for the out-of-memory message.
MEMORY_SETTINGS = {
    "select": "select.batch_size (or set it to auto)", "stats": "stats.batch_size (or auto) or stats.max_len",
    "edit": "the edit regime (edit.regime: sequential with a smaller edit.batch_size) or select.n_edit",
    "finetune": "tasks.<task>.params.micro_batch_size (a number, or auto: the optimiser batch is kept), "
                "seq_len, or a LoRA method",
    "evaluate": "evaluate.batch_size (or set it to auto)",
}


def out_of_memory_message(a, e: BaseException) -> str:
    device = getattr(a, "device", "cpu")
    setting = MEMORY_SETTINGS.get(a.cmd, "the stage's batch size")
    more = ("or run on a larger GPU / set device: cpu" if str(device).startswith(("cuda", "auto"))
            else "or run on a machine with more memory (device: cuda or auto uses a GPU)")
    return (f"{a.cmd}: out of memory on device {device!r} ({type(e).__name__}: {str(e)[:200]}). "
            f"Lower {setting} in the study config, {more}.")
