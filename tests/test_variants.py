"""Dynamic prompts (CONTRACT §3 "Pipelines, wildcards and sampling"): `{a|b}` variants and
`__NAME__` wildcard files in string inputs, each an axis (vars) of a sweep; `sample: N`.
Through `batch-runner validate --json` (and the expansion for the vars each job carries)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import run_cli

from batch_runner.manifest.read import load_manifest
from batch_runner.manifest.variants import Wildcards, expand_all

# (text, what dynamicprompts 0.31.0's CombinatorialPromptGenerator makes of it): recorded from
# the library with wildcards/animal.txt = "cat\n# comment\n\n dog \n{red|blue} bird\n" and
# wildcards/colors/warm.txt = "red\norange\n", colors/cool.txt = "blue\n"
LIBRARY = [
    ("A {red|green|blue} fox", ["A red fox", "A green fox", "A blue fox"]),
    ("{ a | b }x", ["a x", "b x"]),
    ("{2::a|b}", ["a", "b"]),
    ("{0.5::a|3::b}", ["a", "b"]),
    ("{2$$a|b|c}", ["a,b", "a,c", "b,a", "b,c", "c,a", "c,b"]),
    ("{1-2$$a|b|c}", ["a", "b", "c", "a,b", "a,c", "b,a", "b,c", "c,a", "c,b"]),
    ("{2$$ and $$a|b|c}", ["a and b", "a and c", "b and a", "b and c", "c and a", "c and b"]),
    ("__animal__", ["cat", "dog", "red bird", "blue bird"]),
    ("__colors/warm__", ["orange", "red"]),
    ("__colors/*__", ["blue", "orange", "red"]),
    ("{a|{b|c}}", ["a", "b", "c"]),
    ("{x {a|b}|y}", ["x a", "x b", "y"]),
    ("{a|a|b}", ["a", "b"]),
    ("{|a}", ["", "a"]),
    ("{a|b} {a|b}", ["a a", "a b", "b a", "b b"]),
    ("{!a|b}", ["a", "b"]),
    (
        "{2$$__animal__}",
        [
            "cat,dog",
            "cat,red bird",
            "cat,blue bird",
            "dog,cat",
            "dog,red bird",
            "dog,blue bird",
            "red bird,cat",
            "blue bird,cat",
            "red bird,dog",
            "blue bird,dog",
        ],
    ),  # fmt: skip
    ("{__animal__|none}", ["cat", "dog", "red bird", "blue bird", "none"]),
    ("{-2$$a|b|c}", ["a", "b", "c", "a,b", "a,c", "b,a", "b,c", "c,a", "c,b"]),
    ("{3$$a|b}", ["a,b", "b,a"]),
]


def wildcard_folder(root: Path) -> Path:
    (root / "wildcards" / "colors").mkdir(parents=True)
    (root / "wildcards" / "animal.txt").write_text("cat\n# comment\n\n dog \n{red|blue} bird\n")
    (root / "wildcards" / "colors" / "warm.txt").write_text("red\norange\n")
    (root / "wildcards" / "colors" / "cool.txt").write_text("blue\n")
    return root


@pytest.mark.parametrize(("text", "made"), LIBRARY)
def test_the_syntax_makes_what_the_dynamicprompts_library_makes(tmp_path, text, made):
    folder = wildcard_folder(tmp_path) / "wildcards"
    assert expand_all(text, Wildcards(folder)) == made


def validate(tmp_path: Path, text: str, *args: str) -> tuple[int, dict, str]:
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    res = run_cli("validate", path, "--offline", "--json", *args)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout), res.stderr


def prompts_of(tmp_path: Path, text: str) -> list[str]:
    from batch_runner.manifest.expand import expand

    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    return [job.inputs["prompt"] for job in expand(load_manifest(path)).jobs]


def test_variants_and_wildcards_multiply_and_are_counted_per_entry(tmp_path):
    wildcard_folder(tmp_path)
    text = (
        "jobs:\n"
        "  - 'A {red|green} __animal__'\n"  # 2 x 4
        "  - plain prompt\n"
        "sweep:\n"
        "  - prompt: 'A {style} in __colors/warm__'\n"  # 2 styles x 2 colours
        "    vars: {style: [ukiyo-e, bauhaus]}\n"
    )
    code, out, _ = validate(tmp_path, text)
    assert code == 0 and out["jobs"] == 8 + 1 + 4
    assert out["sweeps"] == [{"source": f"{tmp_path}/m.yaml:2", "jobs": 8}] + [
        {"source": f"{tmp_path}/m.yaml:5", "jobs": 4}
    ]
    prompts = prompts_of(tmp_path, text)
    assert prompts[:4] == ["A red cat", "A red dog", "A red red bird", "A red blue bird"]
    assert "A ukiyo-e in orange" in prompts and "plain prompt" in prompts


def test_each_variant_is_a_named_var_of_its_jobs(tmp_path):
    from batch_runner.manifest.expand import expand

    wildcard_folder(tmp_path)
    path = tmp_path / "m.yaml"
    path.write_text("jobs:\n  - 'A {red|green} {fox|owl} __colors/warm__'\n")
    jobs = expand(load_manifest(path)).jobs
    assert jobs[0].vars == {"prompt_1": "red", "prompt_2": "fox", "colors_warm": "orange"}
    assert len({tuple(j.vars.values()) for j in jobs}) == 8 and jobs[0].sweep == 0


def test_name_templates_and_excludes_can_name_a_variant(tmp_path):
    wildcard_folder(tmp_path)
    text = "sweep:\n  - prompt: 'A {red|green|blue} __animal__'\n    exclude: [{prompt_1: blue}]\n"
    code, out, err = validate(tmp_path, text, "--name-template", "{prompt_1}/{animal}-{k}.{ext}")
    assert code == 0, err
    assert out["jobs"] == 2 * 4


def test_vars_placeholders_and_literal_braces_are_untouched(tmp_path):
    text = (
        "jobs:\n  - 'a {{b|c}} d and {name}'\n"
        "sweep:\n  - prompt: 'A {subject} {{x}} {on|under} a {{y|z}}'\n"
        "    vars: {subject: [fox]}\n"
    )
    assert prompts_of(tmp_path, text) == [
        "a {{b|c}} d and {name}",  # a job's braces are its own text
        "A fox {x} on a {y|z}",
        "A fox {x} under a {y|z}",
    ]


def test_a_job_with_a_variant_keeps_its_other_values_as_they_are(tmp_path):
    text = (
        "jobs:\n  - prompt: 'a {b|c} {kept}'\n    tags: [x, y]\n    vars: {v: [1, 2]}\n"
        "    meta: {split: train}\n    repeat: 2\n"
    )
    from batch_runner.manifest.expand import expand

    path = tmp_path / "m.yaml"
    path.write_text(text)
    jobs = expand(load_manifest(path)).jobs
    assert [(j.inputs["prompt"], j.copy) for j in jobs] == [
        ("a b {kept}", 0), ("a b {kept}", 1), ("a c {kept}", 0), ("a c {kept}", 1),
    ]  # fmt: skip
    assert {j.inputs["tags"] == ["x", "y"] and j.meta == {"split": "train"} for j in jobs} == {True}
    assert jobs[0].vars == {"v": [1, 2], "prompt_1": "b"}


def test_a_missing_wildcard_file_is_a_problem_at_its_line(tmp_path):
    wildcard_folder(tmp_path)
    text = "jobs:\n  - fine\n  - prompt: 'A __plants__ in {rain|sun}'\n"
    code, out, err = validate(tmp_path, text)
    assert code == 2
    [problem] = out["problems"]
    assert (problem["line"], problem["field"]) == (3, "prompt")
    assert "__plants__" in problem["message"] and "plants.txt" in problem["message"]
    assert "m.yaml:3: prompt: wildcard __plants__" in err


def test_a_wildcard_using_itself_is_a_problem(tmp_path):
    (tmp_path / "wildcards").mkdir()
    (tmp_path / "wildcards" / "loop.txt").write_text("a __loop__\n")
    code, out, _ = validate(tmp_path, "jobs:\n  - 'x __loop__'\n")
    assert code == 2 and "uses itself" in out["problems"][0]["message"]


def test_text_and_csv_manifests_take_variants_too(tmp_path):
    wildcard_folder(tmp_path)
    (tmp_path / "p.txt").write_text("A {red|blue} __animal__\nplain\n")
    res = run_cli("validate", tmp_path / "p.txt", "--offline", "--json")
    assert json.loads(res.stdout)["jobs"] == 2 * 4 + 1, res.stderr
    (tmp_path / "p.csv").write_text('prompt,resolution\n"A {red|blue} fox",2K\n')
    res = run_cli("validate", tmp_path / "p.csv", "--offline", "--json")
    assert json.loads(res.stdout)["jobs"] == 2, res.stderr


def test_a_list_in_a_sweep_takes_every_text_of_its_variants(tmp_path):
    text = "sweep:\n  - prompt: ['a {b|c}', d]\n    resolution: [2K, 3K]\n"
    prompts = prompts_of(tmp_path, text)
    assert sorted(set(prompts)) == ["a b", "a c", "d"] and len(prompts) == 6


# ---- sampling ------------------------------------------------------------------------------

BIG = "".join(f"      {n}: [{', '.join(f'{n}{i}' for i in range(100))}]\n" for n in "abcdef")


def test_a_sample_of_a_product_of_ten_to_the_twelve_is_quick(tmp_path):
    text = "sweep:\n  - prompt: 'A {a} {b} {c} {d} {e} {f}'\n    sample: 20\n    vars:\n" + BIG
    started = time.monotonic()
    code, out, err = validate(tmp_path, text)
    assert code == 0 and out["jobs"] == 20, err
    assert time.monotonic() - started < 20  # mostly process start; building 10^12 never ends


def test_the_same_seed_gives_the_same_sample_and_a_larger_one_keeps_it(tmp_path):
    head = "sweep:\n  - prompt: 'A {a} {b} {c} {d} {e} {f} {x|y|z}'\n    vars:\n" + BIG
    five = prompts_of(tmp_path, head + "    sample: 5\n    seed: 3\n")
    assert len(set(five)) == 5
    assert prompts_of(tmp_path, head + "    sample: 5\n    seed: 3\n") == five
    assert set(five) <= set(prompts_of(tmp_path, head + "    sample: 9\n    seed: 3\n"))
    assert set(five) != set(prompts_of(tmp_path, head + "    sample: 5\n    seed: 4\n"))


def test_a_top_level_sample_draws_over_every_entry(tmp_path):
    text = (
        "sample: 4\nseed: 1\njobs: [one, two, 'three {x|y}']\n"
        "sweep:\n  - prompt: 'A {red|green|blue} {fox|owl}'\n"
    )
    prompts = prompts_of(tmp_path, text)
    assert len(prompts) == 4 and prompts == prompts_of(tmp_path, text)
    everything = prompts_of(tmp_path, text.replace("sample: 4\n", ""))
    assert len(everything) == 3 + 1 + 6 and set(prompts) <= set(everything)
    assert set(prompts) <= set(prompts_of(tmp_path, text.replace("sample: 4", "sample: 7")))


def test_a_sample_never_keeps_an_excluded_combination(tmp_path):
    text = (
        "sweep:\n  - prompt: '{a|b|c} {d|e}'\n    sample: 4\n"
        "    exclude: [{prompt_1: a}, {prompt_1: b, prompt_2: d}]\n"
    )
    prompts = prompts_of(tmp_path, text)
    assert sorted(prompts) == ["b e", "c d", "c e"]  # only 3 are left to keep


def test_a_list_seed_stays_the_models_input_axis(tmp_path):
    from batch_runner.manifest.expand import expand

    path = tmp_path / "m.yaml"
    path.write_text("sweep:\n  - prompt: '{a|b}'\n    seed: [1, 2, 3]\n    sample: 2\n")
    jobs = expand(load_manifest(path)).jobs
    assert len(jobs) == 2 and all(job.inputs["seed"] in (1, 2, 3) for job in jobs)
    path.write_text("sweep:\n  - prompt: '{a|b|c|d}'\n    seed: 9\n    sample: 2\n")
    jobs = expand(load_manifest(path)).jobs
    assert len(jobs) == 2 and all("seed" not in job.inputs for job in jobs)


def test_a_bad_sample_is_a_problem_at_its_line(tmp_path):
    code, out, _ = validate(tmp_path, "sweep:\n  - prompt: '{a|b}'\n    sample: 0\n")
    assert code == 2 and (out["problems"][0]["line"], out["problems"][0]["field"]) == (3, "sample")
    code, out, _ = validate(tmp_path, "sample: many\njobs: [a]\n")
    assert code == 2 and out["problems"][0]["field"] == "sample"
