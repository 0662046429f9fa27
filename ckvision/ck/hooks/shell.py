"""Guard values that CK writes into generated shell scripts (``export K="V"``)."""

from __future__ import annotations

from collections.abc import Mapping

from ckvision.errors import ConfigError

__all__ = ["check_shell_safe"]

# Inside double quotes a shell still expands these; CK does not escape them.
_UNSAFE = ('"', "$", "`", "\\", "\n", "\r")


def check_shell_safe(env: Mapping[str, str]) -> None:
    """Refuse env values CK would write unescaped into a sourced script."""
    for key, value in env.items():
        bad = [c for c in _UNSAFE if c in str(value)]
        if bad:
            raise ConfigError(
                f"{key}={value!r} contains {' '.join(repr(c) for c in bad)}, which CK would write "
                "unescaped into a shell script; rename the file or folder without those characters"
            )
