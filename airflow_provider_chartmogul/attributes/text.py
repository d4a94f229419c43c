"""Text that cannot be sent: JSON over HTTP is UTF-8, and a lone surrogate has no UTF-8 form."""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def surrogate_problem(text: str) -> str | None:
    """A rule text naming the first lone surrogate in ``text`` (Python lets one into a ``str``,
    e.g. from ``json.loads('"\\\\ud800"')`` or a ``surrogateescape`` decode), or ``None``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        found = _SURROGATE.search(text)
        assert found is not None
        return (
            f"contains a lone surrogate U+{ord(found.group()):04X} at position {found.start()}, "
            "which is not valid Unicode text and cannot be sent as UTF-8"
        )
    return None
