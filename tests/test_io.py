import json
import subprocess
import sys

import pytest

from conftest import make_record
from edit_retention.io import atomic_dir, atomic_path, read_jsonl, write_jsonl
from edit_retention.records import validate_records


def test_atomic_path_keeps_old_file_on_crash(tmp_path):
    p = tmp_path / "out.jsonl"
    write_jsonl(p, [{"a": 1}])
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert read_jsonl(p) == [{"a": 1}]
    # the old file and its checksum sidecar (still matching: read_jsonl checked it), no temporary
    assert sorted(x.name for x in tmp_path.iterdir()) == [".out.jsonl.sha256", "out.jsonl"]


def test_atomic_dir_leaves_nothing_on_crash(tmp_path):
    d = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_dir(d) as tmp:
            (tmp / "weights").write_text("x")
            raise RuntimeError("crash")
    assert not d.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(d) as tmp:
        (tmp / "weights").write_text("y")
    assert (d / "weights").read_text() == "y"


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("target_new"), "record 1 \\(case_id 'c1'\\): missing field 'target_new'"),
    (lambda r: r.update(prompt="The capital is"), "field 'prompt' must contain the subject slot"),
    (lambda r: r.update(paraphrase_prompts=["no slot"]), "paraphrase_prompts\\[0\\]"),
    (lambda r: r.update(target_new=r["target_true"]), "equals 'target_true'"),
    (lambda r: r.update(neighborhood_prompts=[{"prompt": 3}]), "neighborhood_prompts\\[0\\]"),
])
def test_bad_record_names_file_record_field(mutate, message):
    recs = [make_record(0), make_record(1)]
    mutate(recs[1])
    with pytest.raises(ValueError, match=message):
        validate_records(recs, "facts.jsonl")


def test_cli_bad_fact_file_fails_before_writing(tmp_path):
    src = tmp_path / "facts.jsonl"
    bad = make_record(0)
    del bad["subject"]
    src.write_text(json.dumps(make_record(1)) + "\n" + json.dumps(bad) + "\n")
    out = tmp_path / "records.jsonl"
    r = subprocess.run([sys.executable, "-m", "edit_retention", "prepare-facts", "--source",
                        json.dumps({"type": "jsonl", "path": str(src)}), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert f"{src}: record 1 (case_id 'c0'): missing field 'subject'" in r.stderr
    assert not out.exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = subprocess.run([sys.executable, "-m", "edit_retention", "prepare-facts", "--source",
                        json.dumps({"type": "jsonl", "path": str(empty)}), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "the fact set is empty" in r.stderr


def test_stale_temporaries_of_a_killed_writer_are_cleared(tmp_path):
    from edit_retention.io import atomic_dir, write_text
    (tmp_path / ".out.json.abc.tmp").write_text("half")
    (tmp_path / ".model.xyz.tmp").mkdir()
    (tmp_path / ".other.json.abc.tmp").write_text("someone else's")
    write_text(tmp_path / "out.json", "{}")
    with atomic_dir(tmp_path / "model") as d:
        (d / "w").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.abc.tmp", ".out.json.sha256", "model",
                                                          "out.json"]


def test_jsonl_lines_are_sorted_compact_utf8(tmp_path):
    """The jsonlines writer keeps the byte format every artifact has had: keys sorted,
    ", "/": " separators, non-ASCII as UTF-8, one "\\n" per row."""
    p = tmp_path / "rows.jsonl"
    write_jsonl(p, [{"subject": "Zürich", "case_id": "c1", "n": 2}, {"a": [1.5, None, True]}])
    assert p.read_bytes() == ('{"case_id": "c1", "n": 2, "subject": "Zürich"}\n'
                              '{"a": [1.5, null, true]}\n').encode("utf-8")
    assert read_jsonl(p) == [{"case_id": "c1", "n": 2, "subject": "Zürich"}, {"a": [1.5, None, True]}]


def test_jsonl_writer_failing_mid_stream_leaves_no_file(tmp_path):
    def rows():
        yield {"a": 1}
        raise RuntimeError("crash")

    p = tmp_path / "rows.jsonl"
    with pytest.raises(RuntimeError):
        write_jsonl(p, rows())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, message", [
    (b'{"a": 1}\n\n   \n{"a": 2\n', "line 4 is not valid JSON: Expecting ',' delimiter"),
    (b'{"a": 1}\n[1, 2]\n', "line 2 is not a JSON object: [1, 2]"),
    (b'{"a": 1}\nnull\n', "line 2 is not a JSON object: null"),
    (b'{"a": 1}\n{"b": "\xff"}\n', "line 2 is not valid UTF-8"),
])
def test_bad_jsonl_line_names_file_and_line(tmp_path, content, message):
    from edit_retention.io import InputError

    p = tmp_path / "bad.jsonl"
    p.write_bytes(content)
    with pytest.raises(InputError) as e:
        read_jsonl(p)
    assert str(e.value).startswith(f"{p}: {message}")


def test_jsonl_reader_skips_blank_lines_and_crlf(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_bytes(b'{"a": 1}\r\n\r\n{"a": 2}')
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("name, source", [
    ("cf.json", lambda p: {"type": "counterfact", "path": p}),            # a JSON list (read_json)
    ("cf.jsonl", lambda p: {"type": "jsonl", "path": p}),                 # JSONL (read_jsonl)
    ("corpus.txt", None),                                                 # a corpus text file
    ("task.tsv", None),                                                   # a task file
])
def test_non_utf8_file_is_named_not_a_traceback(tmp_path, name, source):
    """Issue 14 item 6: a byte that is not UTF-8 in a fact, corpus or task file stops with a
    message naming the file and line (the CLI prints it, exit 2), never a UnicodeDecodeError."""
    from edit_retention.corpus import build_corpus
    from edit_retention.io import InputError
    from edit_retention.tasks import build_task_data, get_task

    p = tmp_path / name
    p.write_bytes({"cf.json": b'[{"case_id": 0,\n "subject": "caf\xe9"}]\n', "cf.jsonl": b'{"subject": "caf\xe9"}\n',
                   "task.tsv": b'sentence\tlabel\nfine\t1\ncaf\xe9\t0\n', "corpus.txt": b"Fine.\n\nCaf\xe9.\n"}[name])
    if name.endswith("txt"):
        with pytest.raises(InputError, match=f"^{p}: line 3 .*is not valid UTF-8"):
            build_corpus({"type": "text_file", "path": str(p)}, [], 1, 0)
        return
    if name.endswith("tsv"):
        with pytest.raises(InputError, match=f"^{p}: line 3 .*is not valid UTF-8"):
            build_task_data(get_task("classification"), {"type": "file", "path": str(p)}, [], 1, 1)
        return
    out = tmp_path / "records.jsonl"
    r = subprocess.run([sys.executable, "-m", "edit_retention", "prepare-facts", "--source",
                        json.dumps(source(str(p))), "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    line = 1 if name.endswith("jsonl") else 2
    assert f"error: {p}: line {line}" in r.stderr and "is not valid UTF-8" in r.stderr
    assert not out.exists()
