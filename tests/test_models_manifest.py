"""Models in manifests: per-job models and model axes, model_defaults, defaults a model lacks,
per-model validation, .txt manifests, --model, --schema, and the live catalogue over the
bundled one (cached for later runs)."""

from __future__ import annotations

import json

from conftest import read_metadata, run_cli, sim_env

SEEDREAM = "bytedance/seedream-5/lite/text-to-image"
NANO = "google/nano-banana-2-lite/text-to-image"
QWEN = "qwen/qwen-image-3.0/text-to-image"
ACE = "acestep-ai/ace-step-1.5/text-to-audio"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def validate(path, *args, env=None):
    return run_cli("validate", path, *args, env=env)


def validate_json(path, *args, env=None):
    res = validate(path, "--json", *args, env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), res.stderr


def test_problems_name_file_line_and_model(tmp_path):
    text = (
        "jobs:\n"
        "  - prompt: a fox\n"
        f"    model: {NANO}\n"
        "    aspect_ratio: '7:5'\n"
        f"  - {{model: {ACE}, prompt: a song}}\n"
        f"  - {{model: {QWEN}, prompt: x, resolutoin: 1k}}\n"
        f"  - {{model: {ACE}, tags: rock, duration: 999}}\n"
    )
    path = write(tmp_path, "m.yaml", text)
    res = validate(path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    err = res.stderr
    assert f"{path}:4: model {NANO}: aspect_ratio: '7:5' is not one of the allowed values" in err
    assert "(allowed: auto, 21:9, 16:9" in err
    # ace-step takes tags, not prompt: both are said, at the job's line
    assert f"{path}:5: model {ACE}: tags: required" in err
    assert f"{path}:5: model {ACE}: unknown field 'prompt' (allowed: " in err
    assert f"{path}:6: model {QWEN}: unknown field 'resolutoin'" in err
    assert "did you mean 'resolution'" in err
    assert f"{path}:7: model {ACE}: duration: 999 is out of bounds (allowed: 5..240)" in err


def test_model_in_no_catalogue_warns_once_and_validates(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"model": "x/y", "tags": 1}\n{"model": "x/y", "z": 2}\n')
    summary, err = validate_json(path, "--offline")
    assert summary["jobs"] == 2 and summary["models"] == {"x/y": 2}
    assert summary["estimated_cost_usd"] is None
    assert err.count("model 'x/y' is in no catalogue") == 1


def test_defaults_a_model_lacks_are_dropped_with_one_warning(tmp_path):
    text = (
        "defaults: {output_format: png}\n"
        f"model_defaults: {{{NANO}: {{aspect_ratio: '16:9'}}}}\n"
        "sweep:\n"
        "  - prompt: 'A {x}'\n"
        "    vars: {x: [fox, owl, heron]}\n"
        f"    model: [{SEEDREAM}, {NANO}]\n"
    )
    path = write(tmp_path, "m.yaml", text)
    summary, err = validate_json(path, "--offline")
    assert summary["models"] == {SEEDREAM: 3, NANO: 3}
    warning = f"model {NANO}: defaults.output_format is not one of its inputs"
    assert err.count(warning) == 1 and SEEDREAM not in err
    # fields written on a job are strict; model_defaults too
    bad = write(tmp_path, "bad.yaml", f"model: {NANO}\njobs: [{{prompt: a, output_format: png}}]\n")
    res = validate(bad, "--offline")
    assert res.returncode == 2 and "unknown field 'output_format'" in res.stderr
    bad = write(tmp_path, "bad2.yaml", f"model_defaults: {{{NANO}: {{colour: red}}}}\njobs: [a]\n")
    res = validate(bad, "--offline")
    assert (
        res.returncode == 2
        and f"{bad}:1: model {NANO}: model_defaults: unknown field" in res.stderr
    )


def test_a_model_in_defaults_is_the_model_of_every_job_naming_none(sim, tmp_path):
    text = (
        f"defaults: {{model: {NANO}, aspect_ratio: '16:9'}}\n"
        f"jobs: [a fox, {{prompt: an owl, model: {SEEDREAM}}}]\n"
        "sweep:\n"
        "  - prompt: 'A {x}'\n"
        "    vars: {x: [heron, crane]}\n"
    )
    path = write(tmp_path, "m.yaml", text)
    summary, err = validate_json(path, "--offline")
    assert summary["models"] == {NANO: 3, SEEDREAM: 1}  # the job's own model wins
    assert "defaults.model" not in err  # a model, not an input field named `model`
    # --model fills only the jobs that name none after defaults: here none
    summary, _ = validate_json(path, "--offline", "--model", QWEN)
    assert summary["models"] == {NANO: 3, SEEDREAM: 1}
    plain = write(tmp_path, "plain.yaml", "defaults: {aspect_ratio: '16:9'}\njobs: [a]\n")
    summary, _ = validate_json(plain, "--offline", "--model", NANO)
    assert summary["models"] == {NANO: 1}
    bad = write(tmp_path, "bad.yaml", "defaults: {model: [a/b, c/d]}\njobs: [a]\n")
    res = validate(bad, "--offline")
    assert res.returncode == 2 and f"{bad}:1: defaults: model: must be a model path" in res.stderr

    out = tmp_path / "run"
    res = run_cli("run", path, "--out", out, "--no-progress", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    models = {line["prompt"]: line["model"] for line in read_metadata(out)}
    assert models == {"a fox": NANO, "an owl": SEEDREAM, "A heron": NANO, "A crane": NANO}
    bodies = [job["body"] for job in sim.jobs()]
    assert len(bodies) == 4 and not any("model" in body for body in bodies)
    assert sum(body.get("aspect_ratio") == "16:9" for body in bodies) == 3


def test_csv_model_column_and_txt_manifest(tmp_path):
    csv = write(tmp_path, "m.csv", f"prompt,model,aspect_ratio\na,{NANO},16:9\nb,,\n")
    summary, _ = validate_json(csv, "--offline")
    assert summary["models"] == {NANO: 1, SEEDREAM: 1}
    txt = write(tmp_path, "m.txt", "# prompts\n\nA red fox\n  A lighthouse  \n# done\n")
    summary, _ = validate_json(txt, "--offline")
    assert summary["jobs"] == 2 and summary["models"] == {SEEDREAM: 2}
    summary, _ = validate_json(txt, "--offline", "--model", NANO)
    assert summary["models"] == {NANO: 2}
    res = validate(txt, "--offline", "--model", ACE)
    assert res.returncode == 2 and f"{txt}:3: model {ACE}: tags: required" in res.stderr


def test_txt_manifest_runs_on_the_simulator(tmp_path):
    txt = write(tmp_path, "prompts.txt", "A red fox\n\n# skipped\nA lighthouse\n")
    out = tmp_path / "run"
    res = run_cli("run", txt, "--simulate", "--out", out, "--no-progress", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1])["counts"] == {"done": 2}


def test_schema_file_single_list_and_invalid(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"model": "me/mine", "n": "x"}\n')
    single = write(
        tmp_path, "s.json", json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}})
    )
    res = validate(path, "--offline", "--schema", single)
    assert (
        res.returncode == 2 and f"{path}:1: model me/mine: n: must be a whole number" in res.stderr
    )
    # a list entry is for its own model, even over the bundled schema
    entries = [{"model_id": SEEDREAM, "input_schema": {"type": "object", "required": ["colour"]}}]
    listed = write(tmp_path, "l.json", json.dumps(entries))
    jobs = write(tmp_path, "j.yaml", "jobs: [{prompt: a, colour: red}, {prompt: b}]\n")
    res = validate(jobs, "--offline", "--schema", listed)
    assert res.returncode == 2 and f"{jobs}:1: model {SEEDREAM}: colour: required" in res.stderr
    assert res.stderr.count("required") == 1
    for text in ("not json", json.dumps({"hello": "world"}), json.dumps({"type": 5}), "[1, 2]"):
        bad = write(tmp_path, "bad.json", text)
        res = validate(jobs, "--offline", "--schema", bad)
        assert res.returncode == 2 and str(bad) in res.stderr and "Traceback" not in res.stderr


def test_adding_a_model_to_a_sweep_submits_only_its_jobs(sim, tmp_path):
    def manifest(models):
        return write(
            tmp_path,
            "m.yaml",
            "sweep:\n  - prompt: 'A {x}'\n    vars: {x: [fox, owl]}\n"
            f"    model: [{', '.join(models)}]\n",
        )

    out = tmp_path / "run"
    env = sim_env(sim)
    res = run_cli("run", manifest([SEEDREAM]), "--out", out, "--no-progress", env=env)
    assert res.returncode == 0, res.stderr
    assert sim.stats()["submitted"] == 2
    res = run_cli(
        "run", manifest([SEEDREAM, NANO]), "--out", out, "--no-progress", "--json", env=env
    )
    assert res.returncode == 0, res.stderr
    assert sim.stats()["submitted"] == 4  # the seedream jobs kept their keys
    summary = json.loads(res.stdout.splitlines()[-1])
    assert summary["jobs"] == 4 and summary["counts"] == {"done": 4}
    models = [line["model"] for line in read_metadata(out)]
    assert sorted(models) == [SEEDREAM, SEEDREAM, NANO, NANO]


def test_live_schema_is_preferred_noted_and_cached(make_sim, tmp_path):
    sim = make_sim()
    schema = {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string"},
            "colour": {"type": "string", "enum": ["red", "blue"]},
        },
    }
    sim.post("/_sim/config", {"models": {SEEDREAM: {"input_schema": schema}}})
    path = write(tmp_path, "m.yaml", "jobs: [{prompt: a, colour: red}]\n")
    env = sim_env(sim)
    summary, err = validate_json(path, env=env)
    assert summary["jobs"] == 1
    assert err.count("live catalogue's input schema differs from the bundled one") == 1
    bad = write(tmp_path, "bad.yaml", "jobs: [{prompt: a, colour: green}]\n")
    res = validate(bad, env=env)
    assert res.returncode == 2 and "(allowed: red, blue)" in res.stderr
    asked = sim.stats()["requests"].get("catalog", 0)
    # the entry is cached for a day: the next validate does not ask again ...
    validate_json(path, env=env)
    assert sim.stats()["requests"].get("catalog", 0) == asked
    # ... and with the API gone, or --offline, the cached schema is still used
    sim.stop()
    validate_json(path, env=env)
    validate_json(path, "--offline", env=env)
    # without the cache (another API base) it is the bundled schema again, with a warning
    other = sim_env(sim, RUNCOMFY_API_BASE="http://127.0.0.1:9")
    res = validate(path, env=other)
    assert res.returncode == 2 and "could not be read" in res.stderr
    assert "unknown field 'colour'" in res.stderr
