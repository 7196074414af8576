"""Folder artifacts carry a SHA-256 manifest written at the end of their job; a damaged or
hand-edited file is named on load with the command that rebuilds it (issue 14 item 7)."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from edit_retention.checksums import MANIFEST, read_manifest, verify
from edit_retention.editors.base import EditResult, load_edit, save_edit
from edit_retention.io import InputError, atomic_dir
from edit_retention.models import load_model
from edit_retention.stats import Mom2, layer_file, load_stats, save_stats
from edit_retention.checksums import write_manifest


def _edit(tmp_path):
    out = tmp_path / "edits/k0"
    save_edit(EditResult(deltas={"w": torch.ones(3, 2)}, log={"editor": "rome", "cases": []}), out)
    return out


def test_atomic_dir_writes_a_manifest_sha256sum_accepts(tmp_path):
    with atomic_dir(tmp_path / "a") as d:
        (d / "x.txt").write_text("x")
        (d / "sub").mkdir()
        (d / "sub/y.bin").write_bytes(b"\0\1")
    assert set(read_manifest(tmp_path / "a")) == {"x.txt", "sub/y.bin"}
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--quiet", "-c", MANIFEST], cwd=tmp_path / "a", check=True)


@pytest.mark.parametrize("damage", [
    lambda f: f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2]),    # truncated
    lambda f: f.write_bytes(f.read_bytes().replace(b"\x00\x00\x80\x3f", b"\x00\x00\x00\x40", 1)),  # 1.0 -> 2.0
])
def test_a_damaged_edit_is_named_with_its_rebuild_command(tmp_path, damage):
    out = _edit(tmp_path)
    assert load_edit(out).deltas["w"].sum() == 6
    damage(out / "delta.safetensors")
    with pytest.raises(InputError, match=f"{out}/delta.safetensors: damaged or changed since its job wrote it "
                                         f".*rebuild it: snakemake --cores all --forcerun {out}$"):
        load_edit(out)


def test_a_hand_edited_log_and_a_missing_file_are_named(tmp_path):
    out = _edit(tmp_path)
    (out / "log.json").write_text((out / "log.json").read_text().replace("rome", "memit"))
    with pytest.raises(InputError, match="log.json: damaged or changed .*differs from the SHA-256"):
        load_edit(out)
    out = _edit(tmp_path)
    (out / "delta.safetensors").unlink()
    with pytest.raises(InputError, match="not an edit folder"):
        load_edit(out)
    out = _edit(tmp_path)
    (out / "log.json").rename(out / "log.json.bak")
    with pytest.raises(InputError, match="not an edit folder"):
        load_edit(out)


def test_model_folders_are_checked_and_user_folders_without_a_manifest_load(tiny_model_dir, tmp_path):
    model = tmp_path / "base"
    shutil.copytree(tiny_model_dir, model)
    assert (model / MANIFEST).is_file()                     # prepare_model writes through atomic_dir
    load_model(model)
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(InputError, match=f"{weights}: damaged"):
        load_model(model)
    (model / MANIFEST).unlink()                             # a folder of the user's: read as it is
    with pytest.raises(Exception) as e:                     # and safetensors then fails on the bytes
        load_model(model)
    assert "damaged or changed" not in str(e.value)


def test_a_statistics_file_is_checked_against_its_folder_manifest(tmp_path):
    d = tmp_path / "stats"
    f = layer_file(d, 3)
    save_stats(f, Mom2({3: torch.eye(4)}, 10, 2), {"layer": 3})
    write_manifest(d)
    assert torch.equal(load_stats(f)[0][3], torch.eye(4))
    f.write_bytes(f.read_bytes()[:-8])
    with pytest.raises(InputError, match=f"{f}: damaged .*--forcerun {d}$"):
        load_stats(f)
    verify(tmp_path)   # a folder with no manifest: nothing to check


# Single data files (issue 14 item 7, second half): a hidden sidecar .<name>.sha256.

def _scores(tmp_path):
    from edit_retention.io import write_jsonl

    path = tmp_path / "scores/rome/k0.jsonl"
    write_jsonl(path, [{"case_id": i, "p_new": 0.5 + i / 10} for i in range(3)])
    return path


def test_a_data_file_gets_a_sidecar_sha256sum_accepts(tmp_path):
    from edit_retention.checksums import sidecar

    path = _scores(tmp_path)
    side = sidecar(path)
    assert side.name == ".k0.jsonl.sha256" and side.read_text().endswith("  k0.jsonl\n")
    assert subprocess.run(["sha256sum", "-c", side.name], cwd=path.parent, capture_output=True).returncode == 0


@pytest.mark.parametrize("damage", ["truncate", "hand_edit"])
def test_a_damaged_data_file_is_named_with_its_rebuild_command(tmp_path, damage):
    from edit_retention.io import read_jsonl

    path = _scores(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else data.replace(b"0.5", b"0.9"))
    with pytest.raises(InputError, match=rf"{path}: damaged or changed since its job wrote it .*"
                                         rf"rebuild it: snakemake --cores all --forcerun {path}"):
        read_jsonl(path)


def test_csv_and_json_readers_check_the_sidecar_and_user_files_read_as_they_are(tmp_path):
    import pandas as pd

    from edit_retention.io import atomic_path, read_json, read_jsonl, write_json
    from edit_retention.tables import read_table

    csv = tmp_path / "cells.csv"
    with atomic_path(csv, suffix=".csv") as tmp:
        pd.DataFrame({"model": ["m"], "value": [0.5]}).to_csv(tmp, index=False)
    assert read_table(csv)["value"].tolist() == [0.5]
    csv.write_text(csv.read_text().replace("0.5", "0.7"))
    with pytest.raises(InputError, match="cells.csv: damaged"):
        read_table(csv)
    js = tmp_path / "metrics.json"
    write_json(js, {"a": 1})
    js.write_text('{"a": 2}\n')
    with pytest.raises(InputError, match="metrics.json: damaged"):
        read_json(js)
    # A file of the user's (no sidecar) is read as it is.
    (tmp_path / "facts.jsonl").write_text('{"case_id": 1}\n')
    assert read_jsonl(tmp_path / "facts.jsonl") == [{"case_id": 1}]
    # A figure (not a data file) and a file inside a folder artifact get no sidecar.
    with atomic_path(tmp_path / "fig.png", suffix=".png") as tmp:
        tmp.write_bytes(b"png")
    with atomic_dir(tmp_path / "edit") as d:
        write_json(d / "log.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".cells.csv.sha256",
                                                                                   ".metrics.json.sha256"]
    assert sorted(p.name for p in (tmp_path / "edit").iterdir()) == [MANIFEST, "log.json"]


def test_a_rewrite_replaces_the_sidecar(tmp_path):
    from edit_retention.io import read_jsonl, write_jsonl

    path = _scores(tmp_path)
    write_jsonl(path, [{"case_id": 9}])
    assert read_jsonl(path) == [{"case_id": 9}]


def test_a_source_file_the_pipeline_once_wrote_may_be_edited_by_hand(tmp_path):
    """Exported facts (prepare-facts --out sources/facts.jsonl) used as a source: the user
    edits them; a source is read as it is, the sidecar is only for artifacts."""
    from edit_retention.facts import load_facts
    from edit_retention.io import read_jsonl, write_jsonl

    facts = load_facts({"type": "builtin", "per_relation": 6, "seed": 0}, {})
    path = tmp_path / "facts.jsonl"
    write_jsonl(path, facts)
    path.write_text(path.read_text().replace(facts[0]["target_new"], "Atlantis", 1))
    assert load_facts({"type": "jsonl", "path": str(path)}, {})[0]["target_new"] == "Atlantis"
    with pytest.raises(InputError, match="damaged"):
        read_jsonl(path)   # read as an artifact, it is named
