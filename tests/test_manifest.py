"""Reading YAML, CSV and JSONL manifests into entries with file and line; bad input = problems."""

from __future__ import annotations

import pytest

from batch_runner.errors import ManifestError
from batch_runner.jobs import Location
from batch_runner.manifest.load import load_jobs
from batch_runner.manifest.read import load_manifest, read_manifest
from batch_runner.manifest.rows import DEFAULT_MODEL


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def problems(path):
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    return info.value.problems


def test_yaml_full_manifest_keeps_lines_and_top_level_settings(tmp_path):
    path = write(
        tmp_path,
        "m.yaml",
        "model: some/model\n"
        "defaults: {resolution: 2K}\n"
        "repeat: 2\n"
        "options: {concurrency: 8, anything: [1, 2]}\n"
        "jobs:\n"
        "  - A red fox\n"
        "  - prompt: A lighthouse\n"
        "    repeat: 3\n"
        "    meta: {split: train}\n"
        "sweep:\n"
        "  - prompt: A {x}\n"
        "    vars: {x: [a, b]}\n",
    )
    m = load_manifest(path)
    assert (m.model, m.defaults, m.repeat, m.format) == (
        "some/model",
        {"resolution": "2K"},
        2,
        "yaml",
    )
    assert m.options == {"concurrency": 8, "anything": [1, 2]}
    assert [(e.kind, e.source.line) for e in m.entries] == [("job", 6), ("job", 7), ("sweep", 11)]
    assert m.entries[0].data == "A red fox"
    assert m.entries[1].data == {"prompt": "A lighthouse", "repeat": 3, "meta": {"split": "train"}}
    assert m.entries[1].field_lines == {"prompt": 7, "repeat": 8, "meta": 9}
    assert m.entries[2].source == Location(str(path), 11)


def test_yaml_top_level_list_means_jobs_and_model_defaults(tmp_path):
    m = load_manifest(write(tmp_path, "m.yml", "- one\n- prompt: two\n"))
    assert m.model == DEFAULT_MODEL and m.repeat == 1 and m.defaults == {} and m.options == {}
    assert [e.data for e in m.entries] == ["one", {"prompt": "two"}]


def test_sweeps_come_after_jobs_whatever_the_file_order(tmp_path):
    m = load_manifest(write(tmp_path, "m.yaml", "sweep:\n  - prompt: s\njobs:\n  - j\n"))
    assert [e.kind for e in m.entries] == ["job", "sweep"]


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "bad.yaml", "jobs:\n  - a\n  - [unclosed\n  - b: c\n")
    [p] = problems(path)
    assert p.file == str(path) and p.line in (3, 4) and "YAML syntax error" in p.message


def test_unknown_top_level_key_and_bad_values_are_all_reported(tmp_path):
    path = write(
        tmp_path,
        "m.yaml",
        "modle: x\nrepeat: 0\noptions: [1]\ndefaults: 3\njobs:\n  - 5\n  - ok\n",
    )
    found = {(p.line, p.message.split(" (")[0]) for p in problems(path)}
    assert (1, "unknown top-level key 'modle'") in found
    assert {line for line, _ in found} == {1, 2, 3, 4, 6}


@pytest.mark.parametrize("content", ["", "   \n", "# only a comment\n", b"\xef\xbb\xbf"])
def test_empty_yaml_is_one_problem(tmp_path, content):
    [p] = problems(write(tmp_path, "e.yaml", content))
    assert p.message == "empty manifest" and p.line == 1


def test_manifest_without_jobs_is_a_problem(tmp_path):
    [p] = problems(write(tmp_path, "m.yaml", "model: x\njobs: []\n"))
    assert "no jobs" in p.message


def test_scalar_manifest_is_a_problem(tmp_path):
    [p] = problems(write(tmp_path, "m.yaml", "just a string\n"))
    assert "must be a mapping" in p.message


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = write(tmp_path, "m.yaml", b"jobs:\n  - fine\n  - caf\xe9\n")
    [p] = problems(path)
    assert (p.file, p.line) == (str(path), 3) and "UTF-8" in p.message


def test_directory_missing_path_and_unknown_extension(tmp_path):
    (tmp_path / "d.yaml").mkdir()
    [p] = problems(tmp_path / "d.yaml")
    assert "directory" in p.message
    [p] = problems(tmp_path / "missing.yaml")
    assert p.message == "no such file"
    [p] = problems(write(tmp_path, "m.toml", "a"))
    assert ".yaml .yml .csv .jsonl .txt" in p.message


@pytest.mark.timeout(10)
def test_alias_bomb_is_refused_before_it_grows(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 12):
        prev = chr(ord("a") + i - 1)
        name = chr(ord("a") + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    path = write(tmp_path, "bomb.yaml", "\n".join(lines) + "\njobs: *l\n")
    [p] = problems(path)
    assert "alias" in p.message


def test_recursive_alias_is_refused(tmp_path):
    [p] = problems(write(tmp_path, "r.yaml", "jobs: &a [*a]\n"))
    assert "recursive" in p.message


def test_small_anchors_and_merge_keys_work(tmp_path):
    path = write(
        tmp_path,
        "m.yaml",
        "jobs:\n  - &j {prompt: a, resolution: 2K}\n  - {<<: *j, prompt: b}\n",
    )
    m = load_manifest(path)
    assert m.entries[1].data == {"prompt": "b", "resolution": "2K"}


def test_dates_become_strings_and_unsafe_tags_are_problems(tmp_path):
    m = load_manifest(write(tmp_path, "m.yaml", "jobs:\n  - {prompt: a, day: 2024-01-02}\n"))
    assert m.entries[0].data["day"] == "2024-01-02"
    path = write(tmp_path, "u.yaml", "jobs:\n  - ok\n  - !!python/object:os.system {}\n")
    [p] = problems(path)
    assert p.line == 3 and "YAML error" in p.message


def test_set_values_and_non_string_keys_are_problems(tmp_path):
    path = write(tmp_path, "m.yaml", "jobs:\n  - {prompt: a, s: !!set {x}}\n  - {1: a}\n")
    assert [p.line for p in problems(path)] == [2, 3]


def test_duplicate_key_in_a_job_is_a_problem(tmp_path):
    [p] = problems(write(tmp_path, "m.yaml", "jobs:\n  - prompt: a\n    prompt: b\n"))
    assert p.line == 3 and "twice" in p.message


def test_deep_nesting_is_refused(tmp_path):
    deep = "[" * 60 + "]" * 60
    [p] = problems(write(tmp_path, "m.yaml", f"jobs:\n  - {{prompt: a, x: {deep}}}\n"))
    assert "deep" in p.message


# ---------------------------------------------------------------- CSV


def test_csv_basic_rows_meta_repeat_and_empty_cells(tmp_path):
    path = write(
        tmp_path,
        "m.csv",
        "prompt,resolution,repeat,meta.split\nA fox,2K,2,train\nAn owl,,,\n\nA cat, 3K ,,test\n",
    )
    m = load_manifest(path)
    assert m.format == "csv" and m.model == DEFAULT_MODEL
    assert [e.data for e in m.entries] == [
        {"prompt": "A fox", "resolution": "2K", "repeat": 2, "meta": {"split": "train"}},
        {"prompt": "An owl"},
        {"prompt": "A cat", "resolution": " 3K ", "meta": {"split": "test"}},
    ]
    assert [e.source.line for e in m.entries] == [2, 3, 5]


def test_csv_bom_crlf_and_quoted_newlines_keep_line_numbers(tmp_path):
    content = '\ufeffprompt,resolution\r\n"two\r\nlines",2K\r\nnext,3K\r\n'
    m = load_manifest(write(tmp_path, "m.csv", content))
    assert m.entries[0].data == {"prompt": "two\r\nlines", "resolution": "2K"}
    assert [e.source.line for e in m.entries] == [2, 4]


def test_csv_duplicate_and_empty_header_columns(tmp_path):
    found = problems(write(tmp_path, "m.csv", "prompt,,resolution,resolution\na,b,c,d\n"))
    messages = " | ".join(p.message for p in found)
    assert "appears twice" in messages and "no name" in messages
    assert all(p.line == 1 for p in found)


def test_csv_missing_header_is_a_problem(tmp_path):
    with pytest.raises(ManifestError) as info:
        load_jobs(write(tmp_path, "m.csv", "A red fox,2K\nAn owl,3K\n"))
    [p] = info.value.problems
    assert p.line == 1 and "no 'prompt' column" in p.message and "header" in p.message


def test_csv_without_prompt_for_a_model_that_takes_none(tmp_path):
    path = write(tmp_path, "m.csv", "tags,duration\nrock,30\njazz,\n")
    exp = load_jobs(path, model="acestep-ai/ace-step-1.5/text-to-audio")
    assert [j.inputs for j in exp.jobs] == [{"tags": "rock", "duration": 30}, {"tags": "jazz"}]


def test_csv_row_with_too_many_cells_names_its_row(tmp_path):
    [p] = problems(write(tmp_path, "m.csv", 'prompt\nfine\n"a",b\n'))
    assert p.line == 3 and "2 cells" in p.message


def test_csv_empty_and_header_only(tmp_path):
    [p] = problems(write(tmp_path, "e.csv", ""))
    assert p.message == "empty manifest"
    [p] = problems(write(tmp_path, "h.csv", "prompt,resolution\n"))
    assert "no jobs" in p.message


# ---------------------------------------------------------------- JSONL


def test_jsonl_lines_blank_lines_and_bad_json(tmp_path):
    path = write(
        tmp_path,
        "m.jsonl",
        '{"prompt": "a"}\n\n"just a prompt"\n{"prompt": \n[1]\n{"prompt": "b"}\n',
    )
    manifest, found = read_manifest(path)
    assert [(p.line, p.message.split(":")[0]) for p in found] == [
        (4, "invalid JSON"),
        (5, "a job must be a prompt string or a mapping"),
    ]
    assert [(e.source.line, e.data) for e in manifest.entries] == [
        (1, {"prompt": "a"}),
        (3, "just a prompt"),
        (6, {"prompt": "b"}),
    ]


def test_jsonl_deep_nesting_and_empty(tmp_path):
    [p] = problems(write(tmp_path, "d.jsonl", "[" * 100_000 + "\n"))
    assert p.line == 1
    [p] = problems(write(tmp_path, "e.jsonl", "\n\n"))
    assert p.message == "empty manifest"


def test_problem_strings_name_file_and_line(tmp_path):
    path = write(tmp_path, "m.jsonl", "{oops}\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(info.value).startswith(f"{path}:1: invalid JSON")
