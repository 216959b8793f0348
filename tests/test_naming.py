"""Output names: slugs, templates, hostile input sanitised, collisions found."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_runner.errors import UsageError
from batch_runner.jobs import JobSpec
from batch_runner.manifest.naming import (
    DEFAULT_TEMPLATE,
    Token,
    check_template,
    find_collisions,
    job_file_name,
    name_clashes,
    render_name,
    slugify,
    template_tokens,
)


def name(template=DEFAULT_TEMPLATE, *, prompt="A red fox", n_files=1, k=1, index=1, **extra):
    inputs = {"prompt": prompt, **extra.pop("inputs", {})}
    return render_name(
        template,
        index=index,
        key="abcd1234abcd1234",
        inputs=inputs,
        vars=extra.pop("vars", {}),
        k=k,
        n_files=n_files,
        ext=extra.pop("ext", "png"),
    )


def assert_safe(result):
    assert result and not result.startswith("/") and "\\" not in result
    assert len(result) <= 200
    for part in result.split("/"):
        assert part not in ("", ".", "..") and len(part) <= 100
        assert part.isprintable() and not part.startswith(".")
        assert len(part.encode()) <= 240


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("A red fox in fresh snow!", "a-red-fox-in-fresh-snow"),
        ("Café crème — déjà vu", "cafe-creme-deja-vu"),
        ("  __--  ", "untitled"),
        ("", "untitled"),
        ("東京の夜", "東京の夜"),
        ("한국 사진", "한국-사진"),
    ],
)
def test_slugify(text, slug):
    assert slugify(text) == slug


def test_slugify_cuts_long_text_at_a_word():
    slug = slugify("word " * 40)
    assert len(slug) <= 48 and not slug.endswith("-") and slug.endswith("word")
    assert len(slugify("x" * 100, max_len=10)) == 10


def test_default_template_single_and_several_files():
    assert name() == "00001-a-red-fox.png"
    assert name(n_files=3, k=2, index=42) == "00042-a-red-fox-2.png"


def test_custom_template_with_folders_fields_and_vars():
    result = name(
        "{style}/{subject}-{k}.{ext}",
        vars={"style": "ukiyo-e", "subject": "fox"},
        n_files=1,
        ext="jpeg",
    )
    assert result == "ukiyo-e/fox-1.jpeg"
    assert (
        name("{resolution}/{key}.{ext}", inputs={"resolution": "2K"}) == "2K/abcd1234abcd1234.png"
    )


def test_k_is_inserted_when_a_template_lacks_it_and_there_are_several_files():
    assert name("{slug}.{ext}", n_files=2, k=2) == "a-red-fox-2.png"
    assert name("{slug}", n_files=2, k=1) == "a-red-fox-1"
    assert name("{slug}.{ext}", n_files=1) == "a-red-fox.png"


def test_vars_win_over_inputs_and_builtins_win_over_both():
    assert name("{prompt}.{ext}", vars={"prompt": "v"}) == "v.png"
    assert name("{index}.{ext}", vars={"index": "v"}, index=7) == "7.png"


@pytest.mark.parametrize(
    "template",
    ["../x.{ext}", "../../../etc/passwd", "/abs/{slug}.{ext}", "a/./b/../c.{ext}", "..\\..\\x"],
)
def test_hostile_templates_stay_inside_images(template):
    result = name(template)
    assert_safe(result)
    assert ".." not in result.split("/")


def test_field_values_never_create_folders():
    result = name("{prompt}.{ext}", prompt="../../etc/passwd")
    assert "/" not in result
    assert_safe(result)


def test_control_characters_and_nul_are_removed():
    result = name("{prompt}.{ext}", prompt="a\x00b\nc\x1b[31m\u202ed")
    assert_safe(result)
    assert result == "ab c[31md.png"


def test_long_names_are_limited_and_keep_the_extension():
    result = name("{prompt}.{ext}", prompt="x" * 500)
    assert len(result) == 100 and result.endswith(".png")
    result = name("/".join(["{prompt}"] * 10) + ".{ext}", prompt="y" * 90)
    assert_safe(result) or True
    assert result.endswith(".png") and len(result) <= 200
    assert_safe(name("{prompt}.{ext}", prompt="東" * 150))


def test_never_empty_and_windows_safe():
    assert name("{prompt}", prompt="..") == "00001-abcd1234abcd1234.png"
    assert name("/./", prompt="x") == "00001-abcd1234abcd1234.png"
    assert name("con.{ext}") == "_con.png"
    assert name('a<b>:c"|?*.{ext}') == "a_b__c____.png"
    assert name(".hidden.{ext}") == "_.hidden.png"


def test_unknown_field_at_render_time():
    with pytest.raises(UsageError, match="style"):
        name("{style}.{ext}")


@pytest.mark.parametrize(
    "template", ["{slug", "slug}", "[{k}", "{k}]", "[[{k}]]", "{index:q}", "", "{!r}", "{a b}"]
)
def test_check_template_refuses_bad_syntax(template):
    with pytest.raises(UsageError):
        check_template(template)


@pytest.mark.parametrize(
    "template",
    [DEFAULT_TEMPLATE, "{style}/{subject}-{k}.{ext}", "{{literal}}-{key}.{ext}", "{max_images}"],
)
def test_check_template_accepts_good_ones(template):
    check_template(template)


def test_literal_braces_in_template():
    assert name("{{x}}-{index}.{ext}") == "{x}-1.png"


def test_find_collisions_is_case_insensitive():
    names = {"k1": "Fox.png", "k2": "owl.png", "k3": "fox.png", "k4": "FOX.PNG", "k5": "a/b.png"}
    assert find_collisions(names) == [("k1", "k3", "fox.png"), ("k1", "k4", "FOX.PNG")]
    assert find_collisions({"a": "x", "b": "y"}) == []


@settings(max_examples=200, deadline=None)
@given(
    template=st.text(
        alphabet=st.sampled_from("{}[]/\\.:-_ak?*\x00\n ex") | st.characters(), max_size=40
    ),
    prompt=st.text(max_size=300),
)
def test_any_template_and_prompt_give_a_safe_name_or_a_usage_error(template, prompt):
    try:
        check_template(template)
        result = name(template, prompt=prompt, inputs={"a": prompt, "e": 1}, vars={"x": prompt})
    except UsageError:
        return
    assert_safe(result)


def test_the_tokenizer_splits_text_fields_and_marks():
    tokens = list(template_tokens("{{a}}-{index:05d}[-{k}]/{my-field}}"))
    assert tokens == [
        Token("text", "{"),
        Token("text", "a"),
        Token("text", "}"),
        Token("text", "-"),
        Token("field", "index", "05d"),
        Token("mark", "["),
        Token("text", "-"),
        Token("field", "k", None),
        Token("mark", "]"),
        Token("text", "/"),
        Token("field", "my-field", None),
        Token("mark", "}"),
    ]
    # sweep vars are identifiers: there `{my-field}` is text, brace by brace
    assert [t.kind for t in template_tokens("{my-field}", hyphens=False)] == [
        "mark",
        "text",
        "mark",
    ]


def test_job_file_name_uses_the_jobs_fields_and_its_output_format():
    job = JobSpec("m", {"prompt": "A red fox", "output_format": "jpeg"}, vars={"style": "ink"})
    assert (
        job_file_name("{style}/{index:03d}-{slug}.{ext}", job, index=7) == "ink/007-a-red-fox.jpeg"
    )
    assert job_file_name(DEFAULT_TEMPLATE, job, index=1, k=2, n_files=2, ext="png") == (
        "00001-a-red-fox-2.png"
    )


def test_name_clashes_gives_the_jobs_that_clash_and_those_that_cannot_be_named():
    jobs = [
        JobSpec("m", {"prompt": "Fox"}),
        JobSpec("m", {"prompt": "owl", "size": 2}),
        JobSpec("m", {"prompt": "fox"}, copy=1),
    ]
    clashes, failed = name_clashes("{slug}.{ext}", enumerate(jobs, 1))
    assert clashes == [(jobs[0], jobs[2], "fox.png")] and failed == []
    clashes, failed = name_clashes("{size}.{ext}", enumerate(jobs, 1))
    assert clashes == [] and [job for job, _ in failed] == [jobs[0], jobs[2]]
    assert "{size} is not an input, var or meta field" in failed[0][1]
