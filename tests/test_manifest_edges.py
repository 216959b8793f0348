"""Trust at the edges of manifests (issue 26): a stray CSV quote, media problems that name
their file, YAML tabs, run directories given as manifests; each through the command line."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import pytest
from conftest import run_cli, sim_env
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from batch_runner.errors import ManifestError
from batch_runner.manifest.read import load_manifest


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def validate(*args: object, cwd: Path | None = None):
    res = run_cli("validate", *args, "--offline", cwd=cwd)
    assert "Traceback" not in res.stderr
    return res


# ---- CSV: a quote that is never closed ------------------------------------------------------


def test_csv_stray_quote_is_refused_naming_the_line_it_opened(tmp_path):
    path = write(
        tmp_path / "badquote.csv",
        'prompt,meta.split\n"a fox, in snow,train\n"an owl",test\nplain,train\n',
    )
    res = validate("badquote.csv", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith("error: badquote.csv:2: unclosed quote:"), res.stderr
    assert "into line 3" in res.stderr and res.stdout == ""
    # run refuses it the same way, sending nothing
    res = run_cli("run", path, "--simulate", "--out", tmp_path / "run")
    assert res.returncode == 2 and "badquote.csv:2: unclosed quote" in res.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('prompt\nfine\n"never closed\nplain\n', 3),  # runs to the end of the file
        ('prompt\nfine\n"never closed', 3),  # the last line, no newline at the end
        ('prompt\nfine\n"never closed\n', 3),
        ('prompt,meta.split\r\nok,train\r\n"two\r\nlines,train\r\n"x",test\r\n', 3),
        ('"prompt\nfine\n', 1),  # in the header
    ],
)
def test_csv_unclosed_quote_variants(tmp_path, text, line):
    write(tmp_path / "q.csv", text)
    res = validate("q.csv", cwd=tmp_path)
    assert res.returncode == 2
    assert f"q.csv:{line}: unclosed quote" in res.stderr, res.stderr
    assert "empty manifest" not in res.stderr


def test_csv_runaway_quote_in_a_long_file_names_its_line(tmp_path):
    rows = [f"row {i},train" for i in range(20_000)]
    text = "\n".join(["prompt,meta.split", "fine,train", '"stray,train', *rows, '"x",test'])
    write(tmp_path / "big.csv", text + "\n")
    res = validate("big.csv", cwd=tmp_path)
    assert res.returncode == 2
    assert "big.csv:3: unclosed quote" in res.stderr and "longer than a cell" in res.stderr


def test_csv_quoted_cells_over_lines_that_close_are_fine(tmp_path):
    write(
        tmp_path / "ok.csv",
        'prompt,meta.split\n"line1\nline2",train\n"an ""owl"", at night",test\nplain,train\n',
    )
    res = validate("ok.csv", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["jobs"] == 3
    m = load_manifest(tmp_path / "ok.csv")
    assert [e.data["prompt"] for e in m.entries] == ["line1\nline2", 'an "owl", at night', "plain"]
    assert [e.source.line for e in m.entries] == [2, 4, 5]


cells = st.text(alphabet=st.sampled_from(list('ab ,"\r\n\t;é')), min_size=1, max_size=12).filter(
    str.strip
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(cells, cells), min_size=1, max_size=6),
    terminator=st.sampled_from(["\r\n", "\n"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
)
def test_csv_written_by_python_csv_writer_always_reads_back(
    tmp_path_factory, rows, terminator, quoting
):
    """What csv.writer writes (newlines, quotes and commas inside cells) is never taken for a
    stray quote, and each row keeps the line it starts on."""
    # Python 3.11's writer leaves a lone \r unquoted unless it is in the line terminator
    assume(
        terminator == "\r\n"
        or quoting == csv.QUOTE_ALL
        or not any("\r" in c for r in rows for c in r)
    )
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator=terminator, quoting=quoting)
    writer.writerow(["prompt", "meta.note"])
    starts = []
    for row in rows:
        starts.append(len(io.StringIO(out.getvalue(), newline="").readlines()) + 1)
        writer.writerow(row)
    path = write(tmp_path_factory.mktemp("csv") / "w.csv", out.getvalue())
    try:
        m = load_manifest(path)
    except ManifestError as exc:
        raise AssertionError(f"{out.getvalue()!r}: {exc}") from None
    assert [(e.data["prompt"], e.data["meta"]["note"]) for e in m.entries] == rows
    assert [e.source.line for e in m.entries] == starts


@pytest.mark.parametrize(("sep", "name"), [(";", "';'"), ("\t", "tabs")])
def test_csv_with_another_separator_says_so(tmp_path, sep, name):
    write(tmp_path / "semi.csv", f"prompt{sep}meta.split\na fox{sep}train\n")
    res = validate("semi.csv", cwd=tmp_path)
    assert res.returncode == 2
    assert "semi.csv:1: the header row is one column" in res.stderr
    assert f"separated by {name}" in res.stderr and "comma" in res.stderr


def test_csv_with_a_bom_reads_its_first_column(tmp_path):
    write(tmp_path / "bom.csv", "\ufeffprompt,meta.split\r\na fox,train\r\n".encode())
    res = validate("bom.csv", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["jobs"] == 1


# ---- media files: every problem names its file ---------------------------------------------

I2V = "alibaba/happyhorse-1.1/image-to-video"  # image_url: image_uri
EDIT = "bytedance/seedream-5.0-pro/image-to-image"  # image: image_uris


def stills(folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(["dawn", "forest"]):
        Image.new("RGB", (32, 24), (i * 90, 80, 120)).save(folder / f"{name}.png")
    (folder / "notreally.png").write_bytes(b"%PDF-1.7\n...")


ANIMATE = (
    f"model: {I2V}\n"
    'options: {name_template: "{input_stem}-{index:03d}.{ext}"}\n'
    "sweep:\n"
    '  - prompt: ["slow zoom in", "pan left"]\n'
    '    image_url: {files: "stills/*.png"}\n'
)


def test_a_bad_file_in_a_folder_sweep_is_named_and_nothing_else_is_blamed(tmp_path):
    stills(tmp_path / "stills")
    write(tmp_path / "animate.yaml", ANIMATE)
    res = validate("animate.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == (
        f"error: animate.yaml:5: model {I2V}: image_url: stills/notreally.png: "
        "expected image data, got a PDF document\n"
    )
    (tmp_path / "stills" / "notreally.png").unlink()
    res = validate("animate.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_validate_json_prints_its_object_with_the_problems(tmp_path):
    stills(tmp_path / "stills")
    write(tmp_path / "animate.yaml", ANIMATE)
    res = validate("animate.yaml", "--json", cwd=tmp_path)
    assert res.returncode == 2
    out = json.loads(res.stdout)
    assert out["valid"] is False and out["jobs"] is None
    assert out["problems"] == [
        {
            "file": "animate.yaml",
            "line": 5,
            "field": "image_url",
            "message": "stills/notreally.png: expected image data, got a PDF document",
            "model": I2V,
        }
    ]
    assert "notreally.png" in res.stderr  # the person at the terminal still reads it
    # a problem that is not about a line of the manifest comes the same way
    res = validate("animate.yaml", "--json", "--set", "noequals", cwd=tmp_path)
    assert res.returncode == 2
    [problem] = json.loads(res.stdout)["problems"]
    assert problem["file"] is None and "--set 'noequals'" in problem["message"]
    (tmp_path / "stills" / "notreally.png").unlink()
    res = validate("animate.yaml", "--json", cwd=tmp_path)
    out = json.loads(res.stdout)
    assert (
        res.returncode == 0 and out["valid"] is True and out["problems"] == [] and out["jobs"] == 4
    )


def test_local_files_and_urls_in_plain_jobs_and_lists_are_named(tmp_path):
    stills(tmp_path / "pics")
    write(
        tmp_path / "m.yaml",
        f"model: {EDIT}\n"
        "jobs:\n"
        "  - {prompt: a, image: [pics/dawn.png, pics/notreally.png]}\n"
        "  - {prompt: b, image: [pics/dawn.png, pics/gone.png]}\n"
        "  - {prompt: c, image: ['http://example.com/x.png']}\n"
        "  - {prompt: d, image: [pics]}\n",
    )
    res = validate("m.yaml", cwd=tmp_path)
    assert res.returncode == 2
    err = res.stderr
    assert "m.yaml:3: model" in err and "image.1: pics/notreally.png: expected image data" in err
    assert f"image.1: pics/gone.png: no such file ({tmp_path / 'pics' / 'gone.png'})" in err
    assert "image.0: http://example.com/x.png: http:// URLs are refused" in err
    assert "image.0: pics: a folder, not a file" in err
    assert "dawn.png" not in err


# ---- YAML and JSONL ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "model: x\njobs:\n  - prompt: a\n\t- prompt: b\n",
            "tab.yaml:4: a tab character at column 1",
        ),
        ("jobs:\n  - prompt: a\n  \t- prompt: b\n", "tab.yaml:3: a tab character at column 3"),
        ("defaults:\n\tresolution: 2K\njobs: [a]\n", "tab.yaml:2: a tab character at column 1"),
        ("jobs:\n  -\tprompt: a\n", "tab.yaml:2: a tab character at column 4"),
    ],
)
def test_yaml_tab_says_tab_with_its_line_and_column(tmp_path, text, where):
    write(tmp_path / "tab.yaml", text)
    res = validate("tab.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == f"error: {where}: YAML indents with spaces only\n"


def test_yaml_keys_written_twice_at_any_depth(tmp_path):
    write(
        tmp_path / "dup.yaml",
        "defaults:\n  resolution: 2K\n  resolution: 3K\n"
        "jobs:\n  - prompt: a\n    meta: {split: train, split: test}\n"
        "  - prompt: b\n    prompt: c\n"
        'sweep:\n  - prompt: "{x}"\n    vars:\n      x: [a]\n      x: [c]\n',
    )
    res = validate("dup.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "error: dup.yaml:3: 'resolution' written twice (first on line 2)",
        "dup.yaml:6: 'split' written twice on this line",
        "dup.yaml:8: 'prompt' written twice (first on line 7)",
        "dup.yaml:13: 'x' written twice (first on line 12)",
    ]


def test_yaml_merge_keys_are_not_taken_for_keys_written_twice(tmp_path):
    write(
        tmp_path / "merge.yaml",
        "jobs:\n  - &b {prompt: a, resolution: 2K}\n  - {<<: *b, prompt: b, resolution: 3K}\n",
    )
    res = validate("merge.yaml", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["jobs"] == 2


def test_jsonl_keys_written_twice_and_numbers_json_cannot_carry(tmp_path):
    write(
        tmp_path / "e.jsonl",
        '{"prompt": "a", "prompt": "b"}\n{"prompt": "c", "meta": {"score": NaN}}\n'
        '{"prompt": "d"}\r\n  \r\n{"prompt": "e",}\n',
    )
    res = validate("e.jsonl", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "error: e.jsonl:1: 'prompt' written twice",
        "e.jsonl:2: nan is not a number JSON can carry (write a number or null)",
        "e.jsonl:5: invalid JSON: Expecting property name enclosed in double quotes (column 16)",
    ]
    write(tmp_path / "n.yaml", "jobs:\n  - prompt: a\n    meta: {score: .inf}\n")
    res = validate("n.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "n.yaml:2: inf is not a number JSON can carry" in res.stderr


# ---- the command line: help, and what is not a manifest ------------------------------------


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("batch-runner",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_of_every_command_has_a_help_text():
    """Like sqlite-utils' test_docs.py: an option added without help fails here."""
    from batch_runner.cli.main import build_parser

    missing = [
        f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not (action.help or "").strip()
    ]
    assert missing == []
    for path, parser in _parsers(build_parser()):
        assert parser.format_help(), path  # every help text formats (no stray %)
    res = run_cli("validate", "--help")
    assert res.returncode == 0 and "override an input for every job" in res.stdout


def test_a_run_directory_given_as_the_manifest_points_at_resume(make_sim, tmp_path):
    write(tmp_path / "night.txt", "a fox\n")
    env = sim_env(make_sim("--latency", "0.02:0.05", "--image-scale", "0.02"))
    res = run_cli("run", "night.txt", "--out", "jobs/night", env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = run_cli("run", "jobs/night", "--simulate", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith(
        "error: jobs/night is a run directory: use `batch-runner resume jobs/night` to continue it"
    )
    res = validate("jobs/night", cwd=tmp_path)
    assert res.returncode == 2 and "`batch-runner resume jobs/night`" in res.stderr
    assert "`batch-runner status jobs/night`" in res.stderr


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing", "missing: no such file"),  # no suffix: missing, not "unknown type"
        ("missing.yaml", "missing.yaml: no such file"),
        ("folder", "folder: is a directory, not a manifest file"),
        ("loop.yaml", "loop.yaml: cannot read: Too many levels of symbolic links"),
        ("jobs.json", "jobs.json: unknown manifest type (allowed: .yaml .yml .csv .jsonl .txt); "
         "a file of one JSON job per line is .jsonl"),
        ("utf16.csv", "utf16.csv:1: UTF-16 text"),
        ("nul.csv", "nul.csv:2: a NUL byte: this is not UTF-8 text"),  # UTF-16 without a BOM?
    ],
)  # fmt: skip
def test_paths_that_are_no_manifest_get_one_clear_message(tmp_path, name, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "loop.yaml").symlink_to("loop.yaml")
    write(tmp_path / "jobs.json", '[{"prompt": "a"}]')
    write(tmp_path / "utf16.csv", "prompt\na fox\n".encode("utf-16"))
    write(tmp_path / "nul.csv", b"prompt\na\0fox\n")
    for command in ("validate", "run"):
        res = run_cli(
            command, name, "--simulate" if command == "run" else "--offline", cwd=tmp_path
        )
        assert res.returncode == 2
        assert res.stderr.startswith(f"error: {message}") and res.stderr.count("\n") == 1, (
            res.stderr
        )
    assert not (tmp_path / "jobs").exists()


def test_a_meta_field_needs_a_name(tmp_path):
    write(tmp_path / "me.csv", "prompt,meta.\na fox,x\n")
    res = validate("me.csv", cwd=tmp_path)
    assert res.returncode == 2
    assert (
        res.stderr
        == "error: me.csv:1: column 2 is 'meta.' with no name after it (write meta.NAME)\n"
    )
    write(tmp_path / "me.yaml", 'jobs:\n  - prompt: a fox\n    meta: {"": x}\n')
    res = validate("me.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "me.yaml:2: meta.: a meta field needs a name" in res.stderr


def test_a_folder_sweep_needs_a_glob_that_matches(tmp_path):
    sweep = f"model: {I2V}\nsweep:\n  - prompt: a\n    image_url: {{files: GLOB}}\n"
    write(tmp_path / "f.yaml", sweep.replace("GLOB", "3"))
    res = validate("f.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert "f.yaml:4: image_url: files: must be a glob pattern such as 'stills/*.png', not 3" in (
        res.stderr
    )
    write(tmp_path / "f.yaml", sweep.replace("GLOB", "'none/*.png'"))
    res = validate("f.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert f"f.yaml:4: image_url: no file matches 'none/*.png' (relative to {tmp_path})" in (
        res.stderr
    )
