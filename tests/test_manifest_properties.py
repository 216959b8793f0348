"""Random manifests (bytes, near-YAML text, structured data) raise nothing but ManifestError."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_runner.errors import ManifestError
from batch_runner.manifest.load import load_jobs

SUFFIXES = [".yaml", ".csv", ".jsonl"]
PROPERTIES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["2K", "4K", "png", "{x}", "{{y}}", "auto", "3"]),
)
keys = st.sampled_from(
    ["prompt", "resolution", "max_images", "output_format", "repeat", "meta", "vars", "zip",
     "exclude", "colour", "x", "sequential_image_generation"]
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
jobs = st.one_of(st.text(max_size=20), st.dictionaries(keys, values, max_size=5), scalars)
documents = st.one_of(
    st.lists(jobs, max_size=5),
    st.fixed_dictionaries(
        {},
        optional={
            "model": st.sampled_from(["bytedance/seedream-5/lite/text-to-image", "x/y", 3]),
            "defaults": values,
            "repeat": st.integers(-2, 4) | st.text(max_size=3),
            "options": values,
            "jobs": st.lists(jobs, max_size=5) | values,
            "sweep": st.lists(st.dictionaries(keys, values, max_size=5), max_size=3) | values,
            "other": values,
        },
    ),
)
yaml_noise = st.text(
    alphabet=st.sampled_from(list("-:&*![]{}|>#'\" \n\tab12,.?%@`~\\\x00\ufeff\x85é")), max_size=80
)
csv_noise = st.text(alphabet=st.sampled_from(list('prompt,resolution"\r\n meta.x2K\ufeff\x00é')))


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def check(workdir: Path, suffix: str, data: bytes) -> None:
    path = workdir / f"m{suffix}"
    path.write_bytes(data)
    try:
        expansion = load_jobs(path, max_jobs=1000, name_template="{prompt}/{k}.{ext}")
    except ManifestError as exc:
        assert exc.problems and all(p.file == str(path) for p in exc.problems)
        return
    assert len(expansion.jobs) <= 1000


@PROPERTIES
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=200))
def test_random_bytes(workdir, suffix, data):
    check(workdir, suffix, data)


@PROPERTIES
@given(text=yaml_noise)
def test_yaml_like_noise(workdir, text):
    check(workdir, ".yaml", text.encode("utf-8", "surrogatepass"))


@PROPERTIES
@given(text=csv_noise)
def test_csv_like_noise(workdir, text):
    check(workdir, ".csv", text.encode("utf-8", "surrogatepass"))


@PROPERTIES
@given(doc=documents)
def test_structured_yaml(workdir, doc):
    check(workdir, ".yaml", yaml.safe_dump(doc, allow_unicode=True).encode())


@PROPERTIES
@given(lines=st.lists(jobs | values, max_size=5))
def test_structured_jsonl(workdir, lines):
    check(workdir, ".jsonl", "\n".join(json.dumps(line) for line in lines).encode())


@PROPERTIES
@given(
    header=st.lists(keys | st.sampled_from(["meta.split", ""]), min_size=1, max_size=4),
    rows=st.lists(st.lists(st.text(max_size=8), max_size=5), max_size=5),
)
def test_structured_csv(workdir, header, rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    check(workdir, ".csv", out.getvalue().encode())
