"""Guard every value CK 2.6.4 writes into a generated shell script.

CK writes env as ``export K=V`` into the scripts it sources or runs (program runs and
``ck benchmark``, package installers, soft detection's ``env.sh``). It adds double quotes
only when ``V`` contains a space and escapes nothing, so ``$(...)``, backticks, ``;``,
quotes or a newline in ``V`` (or in ``K``) would run as commands. CK gives us one hook
before each script is written (program pre-processing, package ``setup``, soft
``setup``/``version_cmd``); each calls :func:`check_shell_safe` on everything that
script will hold, and a value that is not safe is refused with one line.

Safe means: letters and digits of any alphabet (so non-ASCII names work), spaces inside
the value (CK quotes those), and ``_ - . , / : + = @ %``. That covers file and folder
names, tags, numbers and the values our settings take; anything else is refused
rather than escaped, because CK, not we, writes the script.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from ckvision.errors import ConfigError

__all__ = ["check_shell_safe", "check_shell_safe_values", "unsafe_chars", "SAFE_PUNCTUATION"]

SAFE_PUNCTUATION = frozenset(" _-.,/:+=@%")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def unsafe_chars(value: str) -> list[str]:
    """The characters of ``value`` a shell could act on (empty when it is safe)."""
    bad = [
        c for c in value if c not in SAFE_PUNCTUATION and unicodedata.category(c)[0] not in "LNM"
    ]
    if value != value.strip(" "):
        bad.append("a leading or trailing space")
    return list(dict.fromkeys(bad))


def _describe(bad: list[str]) -> str:
    return " ".join(c if len(c) > 1 else repr(c) for c in bad)


def check_shell_safe(env: Mapping[str, Any], *, where: str = "env") -> None:
    """Refuse env names and values CK would write unescaped into a shell script."""
    for key, value in env.items():
        if not _NAME.match(str(key)):
            raise ConfigError(
                f"{where}: {str(key)!r} is not a valid variable name (letters, digits and _), "
                "which CK would write unescaped into a shell script"
            )
        check_shell_safe_values([str(value)], where=f"{key}")


def check_shell_safe_values(values: Iterable[Any], *, where: str) -> None:
    """Refuse any of ``values`` (tags, paths, versions) that is not shell safe."""
    for value in values:
        text = str(value)
        bad = unsafe_chars(text)
        if bad:
            raise ConfigError(
                f"{where}={text!r} contains {_describe(bad)}, which CK would write unescaped "
                "into a shell script; use only letters, digits, spaces and _-.,/:+=@% "
                "(rename the file or folder if it is a path)"
            )
