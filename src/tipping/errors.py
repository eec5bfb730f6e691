"""The one error type for bad input: the CLI prints it as a single line and exits 2.

Anything else that escapes is a bug and keeps its traceback.
"""


class InputError(Exception):
    """Bad input the user can fix: the message names the file/field/value and what is expected."""


def check(condition: bool, message: str) -> None:
    """Raise InputError(message) unless the condition holds."""
    if not condition:
        raise InputError(message)


def where(path, index=None, field=None) -> str:
    """'FILE record 3 field user_prompt' — the prefix every input error starts with."""
    parts = [str(path)]
    if index is not None:
        parts.append(f"record {index}")
    if field is not None:
        parts.append(f"field {field!r}")
    return " ".join(parts)
