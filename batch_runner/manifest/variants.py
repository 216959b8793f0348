"""Dynamic-prompt syntax in string inputs: `{a|b|c}` variants and `__NAME__` wildcard files.

The syntax is that of the `dynamicprompts` library (Stable Diffusion's dynamic prompts, used
by the A1111 extension) in its combinatorial mode, so existing prompt and wildcard files work:
options are separated by `|` (leading blanks dropped, duplicates once), `{2::a|b}` weights are
read and ignored (every option is made), `{2$$a|b|c}` / `{1-2$$ and $$a|b|c}` join 2 (1 to 2)
different options in every order, variants nest, `!`/`@`/`~` sampler marks are read and ignored,
`__NAME__` is every line of `wildcards/NAME.txt` (blank and `#` lines skipped, sorted, each
line itself dynamic), `__colors/warm__` a file in a sub-folder, `__colors/*__` every matching
file. This module is hand-written rather than built on the library because its results are
bare strings (which option each job took is lost, and that is what makes a variant an axis of
the report's grid and a field of name templates), because `{name}` and `{{`/`}}` already mean
a `vars:` placeholder and literal braces here, and because a missing wildcard file must be a
problem (the library quietly sends the `__NAME__` text).

A string is split into literal text (kept verbatim) and `Group`s, one per variant or wildcard
written at its top level: a group's `values` are its texts in the library's order.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

WILDCARD_DIR = "wildcards"
MAX_VALUES = 100_000  # texts one variant or wildcard may make (the product is not built here)
_WILDCARD = re.compile(r"__([^\s{}#|$_][^\s{}#|$]*?)__")
_BOUND = re.compile(r"\s*(\d*)\s*(?:(-)\s*(\d*))?\s*\$\$(?:([^${}]*)\$\$)?")
_WEIGHT = re.compile(r"\s*\d*\.?\d+\s*::")


class VariantError(Exception):
    """A variant or wildcard that cannot be expanded (a missing file, a loop, too many texts)."""


@dataclass(frozen=True)
class Group:
    """One variant or wildcard of a string: its texts, and the wildcard's name if it is one."""

    values: tuple[str, ...]
    wildcard: str | None = None


Part = str | Group


@dataclass
class Wildcards:
    """The wildcard files of a folder (`wildcards/` beside the manifest), each read once."""

    folder: Path
    _names: list[str] | None = None
    _lines: dict[str, list[str]] = field(default_factory=dict)

    def names(self) -> list[str]:
        """Every wildcard name the folder holds (`colors/warm` for colors/warm.txt), sorted."""
        if self._names is None:
            found = self.folder.rglob("*.txt") if self.folder.is_dir() else []
            self._names = sorted(
                p.relative_to(self.folder).with_suffix("").as_posix() for p in found
            )
        return self._names

    def lines(self, name: str) -> list[str]:
        """The lines of every file `name` matches (a glob may match several), sorted as the
        library sorts them; VariantError when none does."""
        if name in self._lines:
            return self._lines[name]
        matched = [
            n for n in self.names() if n == name or ("*" in name and fnmatch.fnmatch(n, name))
        ]
        if not matched:
            where = self.folder / f"{name}.txt"
            raise VariantError(f"wildcard __{name}__: no file {where}")
        lines: list[str] = []
        for n in matched:
            path = self.folder / f"{n}.txt"
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise VariantError(f"wildcard __{name}__: cannot read {path} ({exc})") from None
            lines += [
                s.strip() for s in text.splitlines() if s.strip() and not s.lstrip().startswith("#")
            ]
        self._lines[name] = sorted(lines)
        return self._lines[name]


def wildcards_beside(manifest_file: str | Path) -> Wildcards:
    return Wildcards(Path(manifest_file).parent / WILDCARD_DIR)


def has_dynamic(text: str) -> bool:
    """Whether a string may hold a variant or a wildcard (a quick test before parsing)."""
    return ("{" in text and "|" in text) or ("__" in text and _WILDCARD.search(text) is not None)


def split(text: str, wildcards: Wildcards) -> list[Part]:
    """The string as literal text and groups, in order; VariantError when one cannot be made."""
    return _Parser(text, wildcards, ()).parts()


def expand_all(text: str, wildcards: Wildcards, _stack: tuple[str, ...] = ()) -> list[str]:
    """Every text a string makes, in the library's combinatorial order (first group slowest)."""
    parts = _Parser(text, wildcards, _stack).parts()
    choices = [[p] if isinstance(p, str) else list(p.values) for p in parts]
    total = math.prod(len(c) for c in choices)
    if total > MAX_VALUES:
        raise VariantError(f"{text[:60]!r} makes {total:,} texts, more than {MAX_VALUES:,}")
    return _unique("".join(combo) for combo in itertools.product(*choices))


def _unique(texts) -> list[str]:
    return list(dict.fromkeys(texts))


class _Parser:
    """One string: `{{`, `}}` and `{name}` stay text; `{...|...}` and `__NAME__` are groups."""

    def __init__(self, text: str, wildcards: Wildcards, stack: tuple[str, ...]):
        self.text = text
        self.wildcards = wildcards
        self.stack = stack  # the wildcards being expanded: one using itself is a loop

    def parts(self) -> list[Part]:
        out: list[Part] = []
        text, pos, literal = self.text, 0, []
        while pos < len(text):
            if text.startswith(("{{", "}}"), pos):
                literal.append(text[pos : pos + 2])
                pos += 2
                continue
            if text[pos] == "{":
                end = _closing(text, pos)
                inner = text[pos + 1 : end] if end is not None else ""
                if end is not None and _is_variant(inner):
                    out += ["".join(literal), self._variant(inner)]
                    literal, pos = [], end + 1
                    continue
            m = _WILDCARD.match(text, pos)
            if m:
                out += ["".join(literal), self._wildcard(m.group(1))]
                literal, pos = [], m.end()
                continue
            literal.append(text[pos])
            pos += 1
        out.append("".join(literal))
        return [p for p in out if p != ""]

    def _wildcard(self, name: str) -> Group:
        if name in self.stack:
            raise VariantError(f"wildcard __{name}__ uses itself ({' → '.join(self.stack)})")
        values: list[str] = []
        for line in self.wildcards.lines(name):
            values += expand_all(line, self.wildcards, (*self.stack, name))
            _check_size(values, f"wildcard __{name}__")
        return Group(tuple(_unique(values)), name)

    def _variant(self, inner: str) -> Group:
        inner = inner.lstrip()
        if inner[:1] in ("!", "@", "~"):  # the library's sampler marks: every option is made
            inner = inner[1:]
        low, high, sep, inner = _bounds(inner)
        alone = _WILDCARD.fullmatch(inner.strip())
        if alone:  # `{2$$__name__}`: the wildcard's lines are the options
            written = self.wildcards.lines(alone.group(1))
        else:
            written = [_unweighted(option) for option in _top_level_split(inner)]
        options = [expand_all(option, self.wildcards, self.stack) for option in written]
        return Group(tuple(_joined(options, low, high, sep)))


def _unweighted(option: str) -> str:
    """An option without its leading blanks and `N::` weight."""
    option = option.lstrip()
    weight = _WEIGHT.match(option)
    return option[weight.end() :].lstrip() if weight else option


def _check_size(values: list[str], what: str) -> None:
    if len(values) > MAX_VALUES:
        raise VariantError(f"{what} makes more than {MAX_VALUES:,} texts")


def _joined(options: list[list[str]], low: int, high: int, sep: str) -> list[str]:
    """Texts of `low`..`high` different options joined by `sep`, every order (the library's)."""
    n = len(options)
    low, high = max(1, min(low, n)), max(1, min(high, n))
    count = sum(math.perm(n, k) for k in range(low, high + 1))
    if count > MAX_VALUES:
        raise VariantError(f"a variant joining {low}-{high} of {n} options makes {count:,} texts")
    out: list[str] = []
    for k in range(low, high + 1):
        for perm in itertools.permutations(range(n), k):
            out += (sep.join(texts) for texts in itertools.product(*(options[i] for i in perm)))
            _check_size(out, "a variant")
    return _unique(out)


def _bounds(inner: str) -> tuple[int, int, str, str]:
    """`{N$$...}`, `{N-M$$...}`, `{N$$SEP$$...}`: how many options, the separator, the rest."""
    m = _BOUND.match(inner)
    if not m or not (m.group(1) or m.group(3)):
        return 1, 1, ",", inner
    low = int(m.group(1)) if m.group(1) else 1
    high = (int(m.group(3)) if m.group(3) else 10**6) if m.group(2) else low
    return low, high, m.group(4) if m.group(4) is not None else ",", inner[m.end() :]


def _closing(text: str, start: int) -> int | None:
    """The index of the `}` closing the `{` at `start` (braces nest), or None."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _is_variant(inner: str) -> bool:
    """`{a|b}`, `{2$$__x__}`, `{a {b|c}}`: a variant; `{name}`, `{name:>4}`: a placeholder."""
    return "|" in inner or _WILDCARD.search(inner) is not None


def _top_level_split(inner: str) -> list[str]:
    """Split at the `|` not inside nested braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return parts
