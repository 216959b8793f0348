"""The quicker tag resolver of the YAML reader gives what PyYAML's plain safe loaders give.

It skips the implicit-type regular expressions for plain scalars whose first character no
implicit type starts with; these tests are why that shortcut may stay. Random text is compared
with the loader it builds on (libyaml's parser, when installed, refuses a few odd flow scalars
that the pure-Python one takes, e.g. `[0:]`: a parser difference, not a resolver one).
"""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_runner.manifest.read_yaml import _BaseLoader, _Loader

SCALARS = [
    *("yes", "No", "ON", "off", "y", "n", "True", "FALSE", "~", "null", "Null", "NULL", ""),
    *("0", "-1", "+1", "0x1F", "0o17", "017", "0b1010", "1_000", "190:20:30", "-0"),
    *("1.5", ".5", "-.5", "1e3", "1.0e+3", "6.8523015e+5", "685_230.15", ".inf", "-.Inf", ".NaN"),
    *("2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10", "2002-1-1"),
    *("<<", "=", "-", "a red fox", "Fox at dusk", "_x", "é café", "1 fox", "1.2.3", "+", "."),
    *("0x", "0xZZ", "1e", "--1", "yes please", "nullable", "Tuesday", "東京の夜"),
]
DOCUMENTS = ["{}", "- {}", "key: {}", "[{}, x]", "{{k: {}}}", "- [a, {}]"]


def agree(document: str, plain_loader: type = yaml.SafeLoader) -> None:
    try:
        plain = repr(yaml.load(document, Loader=plain_loader))  # repr: nan, 1 vs 1.0 vs True
    except yaml.YAMLError:
        with pytest.raises(yaml.YAMLError):
            yaml.load(document, Loader=_Loader)
        return
    assert repr(yaml.load(document, Loader=_Loader)) == plain, document


@pytest.mark.parametrize("scalar", SCALARS)
@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_implicit_type_resolves_as_in_the_safe_loader(document, scalar):
    agree(document.format(scalar))
    agree(document.format(scalar), _BaseLoader)


def test_quoted_scalars_stay_strings():
    agree("- '1'\n- \"yes\"\n- 'null'\n- !!str 3\n- !!int '7'\n")


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.text(alphabet="0123456789+-._:eExXoObB ~yesnoYNtrufalTFNUinf<=aé", max_size=12),
        min_size=1,
        max_size=6,
    )
)
def test_random_plain_scalars_resolve_as_in_the_safe_loader(scalars):
    agree("\n".join(f"- {s}" for s in scalars), _BaseLoader)
    agree("[" + ", ".join(scalars) + "]", _BaseLoader)
    agree("\n".join(f"k{i}: {s}" for i, s in enumerate(scalars)), _BaseLoader)
