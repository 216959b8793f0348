"""Trust at the edges of manifests (issue 26): a stray CSV quote, media problems that name
their file, YAML tabs, run directories given as manifests; each through the command line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import run_cli
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
