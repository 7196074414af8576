import copy
from pathlib import Path

import pytest
import yaml

from edit_retention.config import check_study
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
    (lambda c: c.update(colour="blue"), "Additional properties are not allowed"),
    (lambda c: c["select"].update(n_edit="many"), "select.n_edit: 'many' is not of type 'integer'"),
    (lambda c: c["grid"]["editors"].append("memitt"), "grid.editors\\[2\\]: unknown editor"),
    (lambda c: c["grid"].update(models=["gpt5"]), "grid.models\\[0\\]: unknown model 'gpt5'"),
    (lambda c: c["editors"]["rome"].update(v_lrr=0.1), "editors.rome"),
    (lambda c: c["tasks"]["text"]["params"].update(lr="x"), "tasks.text.params"),
    (lambda c: c["facts"]["builtin"]["source"].update(type="wikidata"), "facts.builtin.source.type"),
    (lambda c: c["edit"].update(regime="parallel"), "edit.regime: 'parallel' is not one of"),
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
])
def test_bad_config_names_the_key(cfg, mutate, message):
    mutate(cfg)
    with pytest.raises(InputError, match=message):
        check_study(cfg, where="params.yaml")



@pytest.mark.parametrize("name", ["smoke", "finetune_suite", "realdata", "paper", "decay", "editors", "elasticity"])
def test_named_configs_are_valid(cfg, name):
    named = yaml.safe_load((ROOT / f"workflow/config/{name}.yaml").read_text())
    check_study(deep_merge(cfg, named), where=f"{name}.yaml")


def test_paper_configs_use_published_hparam_sets(cfg):
    from edit_retention.editors import edited_layers, make_hparams
    paper = deep_merge(cfg, yaml.safe_load((ROOT / "workflow/config/paper.yaml").read_text()))
    layers = {m: edited_layers(make_hparams("rome", paper["editors"]["rome"], paper["models"][m]["hparams"]))
              for m in paper["grid"]["models"]}
    assert layers == {"gpt2-xl": [17], "gpt-j-6b": [5], "llama3-8b": [5]}
    decay = deep_merge(cfg, yaml.safe_load((ROOT / "workflow/config/decay.yaml").read_text()))
    assert make_hparams("memit", decay["editors"]["memit"], "gpt-j-6b").layers == [3, 4, 5, 6, 7, 8]


def test_same_remedy_definition_twice_is_named(cfg, caplog):
    cfg["remedies"]["again"] = dict(cfg["remedies"]["none"])
    cfg["grid"]["remedies"] = ["none", "again"]
    check_study(cfg, where="params.yaml")
    assert "remedies 'none' and 'again' have the same definition" in caplog.text
