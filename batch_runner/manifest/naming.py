"""Output file names: slugs, name templates, sanitising and collision checks (pure functions).

A template is text with `{field}` or `{field:spec}` placeholders, `{{`/`}}` for literal braces
and one kind of optional group, `[...]`, rendered only when the job returns several files.
`template_tokens` is the one tokenizer of that placeholder language: sweep values use it too.
"""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

from batch_runner.errors import UsageError

DEFAULT_TEMPLATE = "{index:05d}-{slug}[-{k}].{ext}"
BUILTIN_FIELDS = ("index", "key", "slug", "k", "ext")
MAX_COMPONENT = 100  # characters in one folder or file name
MAX_COMPONENT_BYTES = 240  # file systems count bytes (255), and UTF-8 may use 4 per character
MAX_TOTAL = 200
# {{ or }} (a literal brace), {name} or {name:spec}, or a lone brace or bracket; input fields
# in a name template may contain '-' and be a pipeline's {STAGE.NAME}, sweep vars may not
_TOKEN = r"\{\{|\}\}|\{([A-Za-z_]%s)(?::([^{}]*))?\}|[{}\[\]]"
_TOKENS = {
    True: re.compile(_TOKEN % r"[\w-]*(?:\.[A-Za-z_][\w-]*)?"),
    False: re.compile(_TOKEN % r"\w*"),
}
_WINDOWS_UNSAFE = re.compile(r'[<>:"|?*]')
_NON_WORD = re.compile(r"[\W_]+")
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)]
)

Item = str | tuple  # literal text, ("field", name, spec) or ("group", items)
Job = TypeVar("Job")  # a JobSpec or a JobRecord: anything with key, inputs and vars


class Token(NamedTuple):
    """One piece of a template: literal `text`, a `field` (text is its name) or a lone `mark`
    (one of `{ } [ ]`, which each user of the tokenizer reads its own way)."""

    kind: str
    text: str
    spec: str | None = None


def template_tokens(text: str, *, hyphens: bool = True) -> Iterator[Token]:
    """Split a template into tokens, in order; `{{` and `}}` come out as literal braces.

    `hyphens`: whether a field name may contain '-'.
    """
    pos = 0
    for m in _TOKENS[hyphens].finditer(text):
        if m.start() > pos:
            yield Token("text", text[pos : m.start()])
        pos = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            yield Token("text", token[0])
        elif m.group(1) is not None:
            yield Token("field", m.group(1), m.group(2))
        else:
            yield Token("mark", token)
    if pos < len(text):
        yield Token("text", text[pos:])


def slugify(text: str, max_len: int = 48) -> str:
    """Lower-case words joined by '-', accents removed, cut at a word boundary; never empty."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
        text = unicodedata.normalize("NFC", text)
    slug = _NON_WORD.sub("-", text.lower()).strip("-")
    if len(slug) > max_len:
        cut = slug[:max_len]
        boundary = cut.rfind("-")
        slug = (cut[:boundary] if boundary > max_len // 2 else cut).strip("-")
    if not slug:
        return "untitled"
    return "-".join(w.capitalize() if w in SPLIT_WORDS else w for w in slug.split("-"))


# Hugging Face `datasets` guesses splits from file and folder names: a name holding one of these
# words between "-._ 0-9" characters (or at its start) goes to that split, e.g.
# "00001-a-train-at-dusk.png" to "train" (datasets/data_files.py, SPLIT_KEYWORDS and
# KEYWORDS_IN_*_BASE_PATTERNS). Its patterns are case-sensitive, so a slug writes these words
# capitalised ("00001-a-Train-at-dusk.png") and a run directory loads as one data set whatever
# the prompts say.
SPLIT_WORDS = frozenset(
    ["train", "training", "validation", "valid", "dev", "val"]
    + ["test", "testing", "eval", "evaluation"]
)
_SPLIT_SEP = "-._ 0-9"
_SPLIT_WORD = re.compile(
    rf"(?:^|[{_SPLIT_SEP}])({'|'.join(sorted(SPLIT_WORDS, key=len, reverse=True))})"
    rf"(?:[{_SPLIT_SEP}]|$)"
)


def split_word(name: str) -> str | None:
    """The split word `datasets` would read in a relative file name, or None."""
    for part in name.split("/"):
        m = _SPLIT_WORD.search(part)
        if m:
            return m.group(1)
    return None


@functools.lru_cache(maxsize=64)
def _parse(template: str) -> tuple[tuple[Item, ...], bool]:
    """Parse a template into items; the flag says whether `{k}` appears anywhere."""
    top: list[Item] = []
    group: list[Item] | None = None
    has_k = False
    for token in template_tokens(template):
        target = top if group is None else group
        if token.kind == "text":
            target.append(token.text)
        elif token.kind == "field" and not _has_bracket(token.spec):
            has_k = has_k or token.text == "k"
            target.append(("field", token.text, token.spec or ""))
        elif token.text == "[":
            if group is not None:
                raise UsageError(f"name template {template!r}: '[' groups cannot be nested")
            group = []
        elif token.text == "]":
            if group is None:
                raise UsageError(f"name template {template!r}: ']' without '['")
            top.append(("group", tuple(group)))
            group = None
        else:  # a lone brace, or a field whose spec holds a bracket (groups need those)
            brace = token.text if token.kind == "mark" else "{"
            raise UsageError(
                f"name template {template!r}: stray {brace!r} (write {brace * 2} for a literal "
                "brace; fields look like {slug} or {index:05d})"
            )
    if group is not None:
        raise UsageError(f"name template {template!r}: '[' without ']'")
    return tuple(top), has_k


def _has_bracket(spec: str | None) -> bool:
    return spec is not None and ("[" in spec or "]" in spec)


def check_template(template: str) -> None:
    """Raise UsageError when a name template cannot be used (bad syntax or format spec)."""
    if not template.strip():
        raise UsageError("name template is empty")
    items, _ = _parse(template)
    samples = {"index": 1, "k": 1, "key": "0123abcd", "slug": "a-slug", "ext": "png"}
    for item in _fields(items):
        _, name, spec = item
        if name in samples:
            try:
                format(samples[name], spec)
            except ValueError as exc:
                raise UsageError(f"name template {template!r}: {{{name}:{spec}}}: {exc}") from None


def template_warnings(template: str, sample: list[Any]) -> list[str]:
    """What a usable template may still get wrong: no `{ext}` (files without an extension), or
    names that `datasets` would split by (shown for the first job of `sample`)."""
    warnings = []
    if not any(item[1] == "ext" for item in _fields(_parse(template)[0])):
        warnings.append(
            f"name template {template!r} has no {{ext}}: files are written without an extension"
        )
    for job in sample:
        with contextlib.suppress(UsageError):  # the job's own problem is reported elsewhere
            name = job_file_name(template, job, index=1)
            word = split_word(name)
            if word:
                warnings.append(
                    f"name template {template!r} gives names like {name!r}: datasets' imagefolder "
                    f"loader reads {word!r} in it as a split name"
                )
    return warnings


def _fields(items: tuple[Item, ...]):
    for item in items:
        if isinstance(item, tuple) and item[0] == "group":
            yield from _fields(item[1])
        elif isinstance(item, tuple):
            yield item


def render_name(
    template: str,
    *,
    index: int,
    key: str,
    inputs: dict[str, Any],
    vars: dict[str, Any],
    k: int,
    n_files: int,
    ext: str,
    meta: dict[str, Any] | None = None,
    ancestors: dict[str, dict[str, Any]] | None = None,
) -> str:
    """Render a safe relative path (may contain folders) for RUN_DIR/images/ (videos/, audio/).

    A field that is neither built in nor an input, var or meta field of the job raises
    UsageError. `{STAGE.NAME}` (pipelines) reads `ancestors[STAGE]` (a parent's or an earlier
    ancestor's meta, inputs and vars); a stage not among them is the job's own (a job of
    STAGE itself, or outside pipelines).
    """
    items, has_k = _parse(template)
    builtins = {"index": index, "key": key, "k": k, "ext": ext}
    builtins["slug"] = slugify(str(inputs.get("prompt", "")))
    values = {**(meta or {}), **inputs, **vars, **builtins}
    for item in _fields(items):
        stage, dot, name = item[1].partition(".")
        if dot:
            source = (ancestors or {}).get(stage, values)
            if name in source:
                values[item[1]] = source[name]
            elif name == "slug":
                values[item[1]] = slugify(str(source.get("prompt", "")))
    # left to the model's default, the format is the one the file came in
    values.setdefault("output_format", "jpeg" if ext == "jpg" else ext)
    text = _render(items, values, n_files > 1)
    if n_files > 1 and not has_k:
        text = _insert_k(text, k)
    parts = _components(text) or _components(f"{index:05d}-{key}.{ext}") or ["unnamed"]
    return "/".join(_fit_total(parts))


def job_file_name(
    template: str,
    job: Any,
    *,
    index: int,
    k: int = 1,
    n_files: int = 1,
    ext: str | None = None,
    ancestors: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The name of file `k` of a job (a JobSpec or a JobRecord) numbered `index`; the
    extension defaults to the job's `output_format` input (what the file will most likely be).
    `ancestors`: render_name's."""
    return render_name(
        template,
        index=index,
        key=job.key,
        inputs=job.inputs,
        vars=job.vars,
        meta=job.meta,
        k=k,
        n_files=n_files,
        ext=str(job.inputs.get("output_format", "png")) if ext is None else ext,
        ancestors=ancestors,
    )


def name_clashes(
    template: str, jobs: Iterable[tuple[int, Job]]
) -> tuple[list[tuple[Job, Job, str]], list[tuple[Job, str]]]:
    """Render the first file name of each (index, job); return the clashes as (first job,
    other job, name) and the jobs whose name cannot be rendered with the reason."""
    listed: list[Job] = []
    names: dict[int, str] = {}
    failed: list[tuple[Job, str]] = []
    for index, job in jobs:
        listed.append(job)
        try:
            names[len(listed) - 1] = job_file_name(template, job, index=index)
        except UsageError as exc:
            failed.append((job, str(exc)))
    clashes = [(listed[a], listed[b], name) for a, b, name in find_collisions(names)]
    return clashes, failed


def _render(items: tuple[Item, ...], values: dict[str, Any], several: bool) -> str:
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif item[0] == "group":
            if several:
                out.append(_render(item[1], values, several))
        else:
            _, name, spec = item
            if name not in values or values[name] is None:
                raise UsageError(
                    f"name template field {{{name}}} is not an input, var or meta field of the job"
                )
            try:
                text = format(values[name], spec)
            except (ValueError, TypeError) as exc:
                raise UsageError(f"name template field {{{name}:{spec}}}: {exc}") from None
            # a value never creates folders: only the template's own '/' does
            out.append(text.replace("/", "_").replace("\\", "_"))
    return "".join(out)


def _insert_k(text: str, k: int) -> str:
    head, sep, last = text.rpartition("/")
    stem, dot, ext = last.rpartition(".")
    last = f"{stem}-{k}.{ext}" if dot and stem else f"{last}-{k}"
    return head + sep + last


def _clean_component(comp: str) -> str:
    if not comp.isprintable():
        comp = "".join(c if c.isprintable() else " " if c.isspace() else "" for c in comp)
    comp = unicodedata.normalize("NFC", comp)
    comp = _WINDOWS_UNSAFE.sub("_", comp).strip().rstrip(". ")
    if comp.startswith("."):
        comp = "_" + comp  # no hidden files, and never "." or ".."
    if comp.partition(".")[0].upper() in _WINDOWS_RESERVED:
        comp = "_" + comp
    return comp


def _components(text: str) -> list[str]:
    parts = []
    for raw in text.replace("\\", "/").split("/"):
        if raw.strip() in ("", ".", ".."):
            continue
        comp = _clean_component(raw)
        if comp:
            parts.append(comp)
    if parts:
        parts[:-1] = [_truncate(p, MAX_COMPONENT) for p in parts[:-1]]
        parts[-1] = _truncate_keep_ext(parts[-1], MAX_COMPONENT)
    return parts


def _truncate(text: str, limit: int, max_bytes: int = MAX_COMPONENT_BYTES) -> str:
    text = text[:limit]
    while len(text.encode()) > max_bytes:
        text = text[:-1]
    return text.rstrip(". ") or "_"


def _truncate_keep_ext(name: str, limit: int) -> str:
    stem, dot, ext = name.rpartition(".")
    fits = len(name) <= limit and len(name.encode()) <= MAX_COMPONENT_BYTES
    if fits or not (dot and stem) or len(ext) > 10:
        return _truncate(name, limit)
    room = MAX_COMPONENT_BYTES - len(ext.encode()) - 1
    return _truncate(stem, max(1, limit - len(ext) - 1), room) + "." + ext


def _fit_total(parts: list[str]) -> list[str]:
    """Keep the whole path within MAX_TOTAL characters, shortening the file name, then folders."""
    if len("/".join(parts)) <= MAX_TOTAL:
        return parts
    name = _truncate_keep_ext(parts[-1], 60)
    folders = []
    room = MAX_TOTAL - len(name)
    for folder in parts[:-1]:
        folder = _truncate(folder, 20)
        if len(folder) + 1 > room:
            break
        folders.append(folder)
        room -= len(folder) + 1
    return folders + [name]


_K = TypeVar("_K")


def find_collisions(names: dict[_K, str]) -> list[tuple[_K, _K, str]]:
    """Given job (key or position) → rendered name, return (first, other, name) for each clash.

    Names are compared case-insensitively, as on the file systems of macOS and Windows.
    """
    first: dict[str, _K] = {}
    clashes = []
    for key, name in names.items():
        folded = unicodedata.normalize("NFC", name).casefold()
        if folded in first:
            clashes.append((first[folded], key, name))
        else:
            first[folded] = key
    return clashes
