"""Validation against the bundled schema, and load_jobs reporting every problem at once."""

from __future__ import annotations

import pytest

from batch_runner.errors import ManifestError, UsageError
from batch_runner.jobs import JobSpec, Location
from batch_runner.manifest.load import load_jobs
from batch_runner.manifest.rows import DEFAULT_MODEL
from batch_runner.manifest.schema import load_schema, validate_jobs

ALLOWED_RESOLUTIONS = (
    "2K, 3K, 2048x2048 (1:1), 2304x1728 (4:3), 1728x2304 (3:4), 2848x1600 (16:9), "
    "1600x2848 (9:16), 2496x1664 (3:2), 1664x2496 (2:3), 3136x1344 (21:9), 3072x3072 (1:1), "
    "3456x2592 (4:3), 2592x3456 (3:4), 4096x2304 (16:9), 2304x4096 (9:16), 3744x2496 (3:2), "
    "2496x3744 (2:3), 4704x2016 (21:9)"
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_problems(path, **kw):
    with pytest.raises(ManifestError) as info:
        load_jobs(path, **kw)
    return info.value.problems


def job(inputs, line=1, model=DEFAULT_MODEL):
    return JobSpec(model, inputs, source=Location("m.yaml", line))


def test_load_schema_known_and_unknown():
    schema = load_schema(DEFAULT_MODEL)
    assert schema["required"] == ["prompt"] and "resolution" in schema["properties"]
    schema["required"].append("x")  # a copy: the bundled schema is untouched
    assert load_schema(DEFAULT_MODEL)["required"] == ["prompt"]
    assert load_schema("someone/else") is None


def test_valid_jobs_have_no_problems():
    jobs = [job({"prompt": "a", "resolution": "2K", "max_images": 3, "output_format": "jpeg"})]
    assert validate_jobs(jobs) == ([], [])


def test_missing_prompt_message():
    [p], _ = validate_jobs([job({"resolution": "2K"}, line=7)])
    assert str(p) == f"m.yaml:7: model {DEFAULT_MODEL}: prompt: required"


def test_wrong_enum_lists_the_allowed_values():
    [p], _ = validate_jobs([job({"prompt": "a", "resolution": "4K"}, line=3)])
    expected = "'4K' is not one of the allowed values (allowed: " + ALLOWED_RESOLUTIONS + ")"
    assert str(p) == f"m.yaml:3: model {DEFAULT_MODEL}: resolution: {expected}"


def test_wrong_type_message():
    [p], _ = validate_jobs([job({"prompt": 5})])
    assert p.field == "prompt" and p.message == "must be a string, not 5"
    [p], _ = validate_jobs([job({"prompt": "a", "max_images": True})])
    assert p.field == "max_images"


def test_unknown_field_lists_allowed_and_suggests():
    [p], _ = validate_jobs([job({"prompt": "a", "resolutoin": "2K"})])
    assert p.message.startswith("unknown field 'resolutoin' (allowed: prompt, resolution, ")
    assert "repeat" in p.message and "meta" in p.message
    assert "did you mean 'resolution'" in p.message


def test_every_problem_of_every_job_is_reported():
    jobs = [job({"resolution": "4K"}, 1), job({"prompt": "a", "max_images": 99}, 2)]
    found, _ = validate_jobs(jobs)
    assert [(p.line, p.field) for p in found] == [
        (1, "prompt"),
        (1, "resolution"),
        (2, "max_images"),
    ]


def test_identical_problems_from_one_line_are_reported_once():
    jobs = [job({"prompt": f"p{i}", "resolution": "4K"}, line=5) for i in range(1000)]
    jobs.append(job({"prompt": "q", "resolution": "4K"}, line=6))
    found, _ = validate_jobs(jobs)
    assert [p.line for p in found] == [5, 6]


def test_unknown_model_warns_once_and_needs_only_a_json_object():
    jobs = [job({"prompt": "a", "anything": 1}, model="x/y"), job({"tags": 3}, 2, model="x/y")]
    found, warnings = validate_jobs(jobs)
    assert found == []
    assert len(warnings) == 1 and "model 'x/y' is in no catalogue" in warnings[0]
    [p], _ = validate_jobs([job("not a mapping", model="x/y")])
    assert p.model == "x/y" and "JSON object" in p.message


def test_schemas_argument_overrides_the_bundled_ones():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    found, warnings = validate_jobs([job({"n": "x"}, model="m")], schemas={"m": schema})
    assert [p.field for p in found] == ["n"] and warnings == []


def test_complex_schema_is_validated_whole():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a"],
        "anyOf": [{"required": ["b"]}, {"properties": {"a": {"minimum": 10}}}],
    }
    found, _ = validate_jobs([job({"a": 1}, model="m")], schemas={"m": schema})
    assert len(found) == 1 and found[0].field is None
    found, _ = validate_jobs([job({"b": 1}, model="m")], schemas={"m": schema})
    assert [(p.field, p.message) for p in found] == [("a", "required")]


# ---------------------------------------------------------------- load_jobs


def test_load_jobs_reports_problems_from_every_stage_at_once(tmp_path):
    path = write(
        tmp_path,
        "m.yaml",
        "colour: red\n"
        "jobs:\n"
        "  - prompt: a\n    resolution: 4K\n"
        "  - resolution: 2K\n"
        "  - {prompt: c, repeat: 0}\n"
        "  - {prompt: d, foo: 1}\n"
        "sweep:\n  - prompt: '{nope}'\n",
    )
    found = load_problems(path)
    assert [p.line for p in found] == [1, 4, 5, 6, 7, 9]  # a field's own line when known
    text = "\n".join(str(p) for p in found)
    assert (
        f"{path}:4: model {DEFAULT_MODEL}: resolution: '4K' is not one of the allowed values"
        in text
    )
    assert f"{path}:5: model {DEFAULT_MODEL}: prompt: required" in text
    assert f"{path}:7: model {DEFAULT_MODEL}: unknown field 'foo'" in text


def test_load_jobs_returns_expansion_with_warnings(tmp_path):
    path = write(tmp_path, "m.yaml", "model: other/model\njobs: [a, a]\n")
    exp = load_jobs(path)
    assert exp.model == "other/model" and len(exp.jobs) == 2
    assert any("in no catalogue" in w for w in exp.warnings)


def test_csv_integers_are_converted_and_bad_ones_reported(tmp_path):
    path = write(tmp_path, "m.csv", "prompt,max_images\na,3\nb, 4 \nc,\n")
    exp = load_jobs(path)
    assert [j.inputs.get("max_images") for j in exp.jobs] == [3, 4, None]
    [p] = load_problems(write(tmp_path, "bad.csv", "prompt,max_images\na,three\n"))
    assert (p.line, p.field) == (2, "max_images") and "allowed: 1, 2, 3" in p.message


def test_csv_unknown_column_is_reported_once_on_the_header(tmp_path):
    path = write(tmp_path, "m.csv", "prompt,colour\n" + "".join(f"p{i},red\n" for i in range(50)))
    [p] = load_problems(path)
    assert p.line == 1 and p.message.startswith("unknown column 'colour' (allowed: prompt, ")


def test_csv_row_problems_name_the_row(tmp_path):
    path = write(tmp_path, "m.csv", 'prompt,resolution\n"multi\nline",2K\nok,4K\n')
    [p] = load_problems(path)
    assert (p.line, p.field) == (4, "resolution")


def test_a_bad_default_is_reported_once_at_the_defaults(tmp_path):
    path = write(tmp_path, "m.yaml", "defaults: {resolution: 4K, colour: red}\njobs: [a, b, c]\n")
    [p] = load_problems(path)
    assert (p.line, p.field) == (1, "defaults.resolution")


def test_a_default_the_model_lacks_is_left_out_with_one_warning(tmp_path):
    path = write(tmp_path, "m.yaml", "defaults: {resolution: 2K, colour: red}\njobs: [a, b, c]\n")
    exp = load_jobs(path)
    assert all(j.inputs == {"prompt": j.inputs["prompt"], "resolution": "2K"} for j in exp.jobs)
    assert [w for w in exp.warnings if "colour" in w] == [
        f"model {DEFAULT_MODEL}: defaults.colour is not one of its inputs; left out of its jobs"
    ]


def test_unknown_set_field_is_reported_once(tmp_path):
    path = write(tmp_path, "m.yaml", "jobs: [a, b, c]\n")
    [p] = load_problems(path, overrides={"colour": "red"})
    assert p.field == "--set" and "unknown field 'colour'" in p.message


def test_load_jobs_refuses_too_many_jobs(tmp_path):
    path = write(tmp_path, "m.yaml", "repeat: 100\njobs: [a, b]\n")
    [p] = load_problems(path, max_jobs=150)
    assert "--max-jobs" in p.message
    assert len(load_jobs(path, max_jobs=200).jobs) == 200


def test_name_collisions_name_both_lines(tmp_path):
    text = "jobs:\n  - {prompt: a, resolution: 2K}\n  - {prompt: a, resolution: 3K}\n  - b\n"
    path = write(tmp_path, "m.yaml", text)
    assert len(load_jobs(path, name_template="{index}-{slug}.{ext}").jobs) == 3
    [p] = load_problems(path, name_template="{slug}.{ext}")
    assert p.line == 3 and "line 2" in p.message and "'a.png'" in p.message


def test_collisions_are_case_insensitive_and_reported_per_pair_of_lines(tmp_path):
    text = "sweep:\n  - prompt: 'A {x}'\n    vars: {x: [Fox, fox, FOX, owl, OWL]}\n"
    path = write(tmp_path, "m.yaml", text)
    [p] = load_problems(path, name_template="{prompt}.{ext}")
    assert p.line == 2 and "3 clashing names" in p.message


def test_template_field_missing_from_a_job_is_a_problem(tmp_path):
    text = "jobs: [a]\nsweep:\n  - prompt: 'A {style}'\n    vars: {style: [ink, oil]}\n"
    path = write(tmp_path, "m.yaml", text)
    [p] = load_problems(path, name_template="{style}/{index}.{ext}")
    assert p.line == 1 and "{style}" in p.message


def test_bad_template_is_a_usage_error(tmp_path):
    path = write(tmp_path, "m.yaml", "jobs: [a]\n")
    with pytest.raises(UsageError):
        load_jobs(path, name_template="{slug")


def test_missing_file_through_load_jobs(tmp_path):
    [p] = load_problems(tmp_path / "nope.csv")
    assert p.message == "no such file"
