"""The one rule for values CK writes into shell scripts (fast; test_ck_trust.py drives ck)."""

from __future__ import annotations

import re
import subprocess

import pytest

from ckvision.ck.hooks.shell import check_shell_safe, check_shell_safe_values
from ckvision.errors import ConfigError

ACCEPTED = [
    "",
    "0",
    "Offline",
    "0.5 0.5 0.5",
    "/data/ImageNet val/ILSVRC2012",
    "/données/ünïcode/画像",
    "cafe\u0301",
    "model,onnx,maxbatch.32",
    "input_tensor:0",
    "user@host:/x",
    "50%",
    "a=b+c",
]
# value -> the character (or phrase) the one-line refusal must name
REFUSED = {
    "$(id)": "$",
    "`id`": "`",
    "a;b": ";",
    'a"b': '"',
    "a'b": "'",
    "a\nb": "\n",
    "a\tb": "\t",
    "a|b": "|",
    "a&b": "&",
    "a>b": ">",
    "a<b": "<",
    "a\\b": "\\",
    "~/x": "~",
    "a*": "*",
    "a?": "?",
    "{a,b}": "{",
    "a#b": "#",
    "a!b": "!",
    " lead": "a leading or trailing space",
    "trail ": "a leading or trailing space",
}


@pytest.mark.parametrize("value", ACCEPTED)
def test_safe_values_pass_and_survive_the_shell_unchanged(value: str) -> None:
    check_shell_safe({"K": value})
    # what CK writes: quoted when the value has a space, bare otherwise
    quoted = f'"{value}"' if " " in value else value
    out = subprocess.run(
        ["bash", "-c", f'export K={quoted}\nprintf %s "$K"'],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.stdout == value


@pytest.mark.parametrize(("value", "named"), list(REFUSED.items()), ids=list(REFUSED))
def test_unsafe_values_are_refused_with_one_line(value: str, named: str) -> None:
    expected = repr(named) if len(named) == 1 else named
    with pytest.raises(ConfigError, match=re.escape(expected)) as info:
        check_shell_safe({"CKX": value})
    message = str(info.value)
    assert "\n" not in message and message.startswith("CKX=")
    assert "which CK would write unescaped into a shell script" in message


@pytest.mark.parametrize("name", ["1A", "A B", "A$(id)", "A-B", "", "A\nB"])
def test_bad_variable_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="not a valid variable name"):
        check_shell_safe({name: "1"})


def test_values_other_than_env_name_their_place() -> None:
    with pytest.raises(ConfigError, match=r"^tag='a;b' contains"):
        check_shell_safe_values(["ok", "a;b"], where="tag")
