"""Expansion: defaults, repeats, sweeps (product, vars, zip, exclude), overrides, counts, keys."""

from __future__ import annotations

import pytest

from batch_runner.errors import ManifestError, UsageError
from batch_runner.jobs import job_key
from batch_runner.manifest.expand import collect_expansion, count_jobs, expand, parse_set
from batch_runner.manifest.read import load_manifest


def manifest(tmp_path, text, name="m.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_manifest(path)


def jobs_of(tmp_path, text, **kw):
    return expand(manifest(tmp_path, text), **kw).jobs


def expansion_problems(tmp_path, text):
    with pytest.raises(ManifestError) as info:
        expand(manifest(tmp_path, text))
    return info.value.problems


def test_defaults_job_inputs_and_overrides_merge_in_that_order(tmp_path):
    text = (
        "defaults: {resolution: 2K, output_format: png}\n"
        "jobs:\n  - fox\n  - {prompt: owl, resolution: 3K, output_format: ~}\n"
    )
    jobs = expand(manifest(tmp_path, text), {"output_format": "jpeg"}).jobs
    assert [j.inputs for j in jobs] == [
        {"resolution": "2K", "output_format": "jpeg", "prompt": "fox"},
        {"resolution": "3K", "output_format": "jpeg", "prompt": "owl"},
    ]


def test_none_drops_an_input_so_the_model_default_applies(tmp_path):
    [job] = jobs_of(
        tmp_path, "defaults: {resolution: 2K}\njobs:\n  - {prompt: a, resolution: null}\n"
    )
    assert job.inputs == {"prompt": "a"}


def test_repeats_multiply_and_copies_have_distinct_keys(tmp_path):
    text = "repeat: 2\njobs:\n  - a\n  - {prompt: b, repeat: 3, meta: {split: train}}\n"
    jobs = jobs_of(tmp_path, text)
    assert [(j.inputs["prompt"], j.copy) for j in jobs] == [
        ("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2), ("b", 3), ("b", 4), ("b", 5),
    ]  # fmt: skip
    assert len({j.key for j in jobs}) == 8
    assert jobs[2].meta == {"split": "train"} and jobs[0].meta == {}
    assert jobs[2].source.line == 4 and jobs[2].sweep is None


def test_keys_are_stable_and_ignore_dict_order(tmp_path):
    a = jobs_of(tmp_path, "jobs:\n  - {prompt: x, resolution: 2K}\n")[0]
    b = jobs_of(tmp_path, "jobs:\n  - {resolution: 2K, prompt: x}\n")[0]
    assert a.key == b.key == job_key(a.model, {"resolution": "2K", "prompt": "x"}, 0)
    c = jobs_of(tmp_path, "jobs:\n  - {resolution: 3K, prompt: x}\n")[0]
    assert c.key != a.key
    assert job_key(a.model, a.inputs, 1) != a.key


def test_identical_jobs_become_further_copies_with_a_warning(tmp_path):
    exp = expand(manifest(tmp_path, "jobs:\n  - a\n  - {prompt: a, repeat: 2}\n  - a\n"))
    assert [j.copy for j in exp.jobs] == [0, 1, 2, 3]
    assert len({j.key for j in exp.jobs}) == 4
    assert any("same inputs" in w for w in exp.warnings)


def test_bad_repeat_and_meta_are_problems_with_the_field_line(tmp_path):
    found = expansion_problems(
        tmp_path, "jobs:\n  - prompt: a\n    repeat: 0\n  - prompt: b\n    meta: [1]\n"
    )
    assert [(p.line, p.field) for p in found] == [(3, "repeat"), (5, "meta")]


def test_zip_and_exclude_are_only_for_sweeps(tmp_path):
    [p] = expansion_problems(tmp_path, "jobs:\n  - {prompt: a, zip: {x: [1]}}\n")
    assert p.field == "zip" and "sweep" in p.message


def test_plain_jobs_leave_placeholders_and_lists_alone(tmp_path):
    [job] = jobs_of(tmp_path, "jobs:\n  - {prompt: 'A {x} {{y}}', resolution: [2K, 3K]}\n")
    assert job.inputs == {"prompt": "A {x} {{y}}", "resolution": ["2K", "3K"]}


def test_plain_job_vars_are_kept(tmp_path):
    [job] = jobs_of(tmp_path, "jobs:\n  - {prompt: a, vars: {style: ink}}\n")
    assert job.vars == {"style": "ink"} and "vars" not in job.inputs


SWEEP = """\
jobs:
  - first
sweep:
  - prompt: "A {subject} in {style}"
    vars: {subject: [fox, owl], style: [ukiyo-e, bauhaus]}
    resolution: ["2K", "3K"]
"""


def test_sweep_is_the_product_in_written_order(tmp_path):
    exp = expand(manifest(tmp_path, SWEEP))
    sweep = exp.jobs[1:]
    assert [(j.inputs["prompt"], j.inputs["resolution"]) for j in sweep[:3]] == [
        ("A fox in ukiyo-e", "2K"),
        ("A fox in ukiyo-e", "3K"),
        ("A fox in bauhaus", "2K"),
    ]
    assert len(sweep) == 8 and {j.sweep for j in sweep} == {0}
    assert sweep[0].vars == {"subject": "fox", "style": "ukiyo-e"}
    assert exp.sweep_counts[0][1] == 8 and exp.sweep_counts[0][0].line == 4
    assert count_jobs(manifest(tmp_path, SWEEP)) == 9


def test_sweep_exclude_drops_matching_combinations(tmp_path):
    text = (
        SWEEP + "    exclude: [{style: bauhaus, resolution: 3K}, {subject: owl, style: ukiyo-e}]\n"
    )
    exp = expand(manifest(tmp_path, text))
    combos = {(j.vars["subject"], j.vars["style"], j.inputs["resolution"]) for j in exp.jobs[1:]}
    assert len(combos) == 4
    assert ("fox", "bauhaus", "3K") not in combos and ("owl", "ukiyo-e", "2K") not in combos
    assert exp.sweep_counts[0][1] == 4
    assert count_jobs(manifest(tmp_path, text)) == 9  # an upper bound


def test_sweep_exclude_unknown_name_is_a_problem(tmp_path):
    [p] = expansion_problems(tmp_path, SWEEP + "    exclude: [{colour: red}]\n")
    assert p.field == "exclude" and "colour" in p.message


def test_sweep_repeat_and_top_level_repeat(tmp_path):
    text = "repeat: 2\nsweep:\n  - prompt: a {n}\n    vars: {n: [1, 2, 3]}\n    repeat: 2\n"
    jobs = jobs_of(tmp_path, text)
    assert len(jobs) == 12 == count_jobs(manifest(tmp_path, text))
    assert [j.copy for j in jobs[:4]] == [0, 1, 2, 3]
    assert len({j.key for j in jobs}) == 12


def test_zip_advances_together_and_fills_vars(tmp_path):
    text = (
        "sweep:\n  - prompt: 'A {animal}'\n"
        "    zip: {animal: [fox, owl, cat], resolution: [2K, 3K, 2K]}\n"
        "    output_format: [png, jpeg]\n"
    )
    jobs = jobs_of(tmp_path, text)
    assert len(jobs) == 6
    assert [(j.inputs["prompt"], j.inputs["resolution"]) for j in jobs[::2]] == [
        ("A fox", "2K"),
        ("A owl", "3K"),
        ("A cat", "2K"),
    ]
    assert jobs[0].vars == {"animal": "fox"} and "animal" not in jobs[0].inputs


def test_zip_lists_of_different_lengths_are_a_problem(tmp_path):
    [p] = expansion_problems(tmp_path, "sweep:\n  - prompt: a\n    zip: {x: [1, 2], y: [1]}\n")
    assert p.field == "zip" and "equal lengths" in p.message and p.line == 3


def test_literal_braces_and_format_specs(tmp_path):
    text = "sweep:\n  - prompt: '{{lit}} {n:03d} {x}'\n    vars: {n: [7], x: ['{y}']}\n"
    [job] = jobs_of(tmp_path, text)
    assert job.inputs["prompt"] == "{lit} 007 {y}"


def test_unknown_placeholder_names_the_line(tmp_path):
    text = "sweep:\n  - vars: {subject: [fox]}\n    prompt: 'A {subjcet}'\n"
    [p] = expansion_problems(tmp_path, text)
    assert p.line == 3 and p.field == "prompt" and "{subjcet}" in p.message
    assert "subject" in p.message


def test_braces_that_are_not_placeholders_are_left_alone(tmp_path):
    [job] = jobs_of(tmp_path, "sweep:\n  - prompt: 'x {a b} } {'\n")
    assert job.inputs["prompt"] == "x {a b} } {"


def test_empty_sweep_list_warns(tmp_path):
    exp = expand(manifest(tmp_path, "jobs: [a]\nsweep:\n  - prompt: [ ]\n"))
    assert len(exp.jobs) == 1 and exp.sweep_counts[0][1] == 0 and exp.warnings


@pytest.mark.timeout(5)
def test_huge_sweep_is_refused_by_count_before_building(tmp_path):
    values = ", ".join(str(i) for i in range(1000))
    text = (
        "sweep:\n  - prompt: '{a}{b}{c}'\n"
        f"    vars: {{a: [{values}], b: [{values}], c: [{values}]}}\n"
    )
    m = manifest(tmp_path, text)
    assert count_jobs(m) == 10**9
    with pytest.raises(ManifestError) as info:
        expand(m)
    [p] = info.value.problems
    assert "--max-jobs" in p.message and "1,000,000,000" in p.message and p.line == 2


def test_max_jobs_can_be_raised(tmp_path):
    m = manifest(tmp_path, "repeat: 5\njobs: [a, b]\n")
    with pytest.raises(ManifestError):
        expand(m, max_jobs=9)
    assert len(expand(m, max_jobs=10).jobs) == 10


def test_collect_expansion_keeps_good_entries(tmp_path):
    m = manifest(tmp_path, "jobs:\n  - a\n  - {prompt: b, repeat: x}\n  - c\n")
    exp, found = collect_expansion(m)
    assert [j.inputs["prompt"] for j in exp.jobs] == ["a", "c"] and len(found) == 1


def test_csv_repeat_column(tmp_path):
    m = manifest(tmp_path, "prompt,repeat\na,2\nb,\nc,x\n", name="m.csv")
    exp, found = collect_expansion(m)
    assert [j.inputs["prompt"] for j in exp.jobs] == ["a", "a", "b"]
    assert [(p.line, p.field) for p in found] == [(4, "repeat")]


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ("max_images=3", 3),
        ("output_format=png", "png"),
        ("prompt=a: b", "a: b"),
        ("prompt=[x", "[x"),
        ("x=1.5", 1.5),
        ("flag=true", True),
        ("resolution=", None),
        ("prompt=a=b", "a=b"),
        ("day=2024-01-02", "2024-01-02"),
    ],
)
def test_parse_set_types_values(item, value):
    key = item.split("=")[0]
    assert parse_set([item]) == {key: value}


@pytest.mark.parametrize("item", ["novalue", "=x", " =x"])
def test_parse_set_refuses_items_without_key_or_value(item):
    with pytest.raises(UsageError):
        parse_set([item])
