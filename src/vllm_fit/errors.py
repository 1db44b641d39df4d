"""Errors raised for bad input.

Every user-facing problem (unknown model, broken config, impossible flag) is a
``VllmFitError`` with one line that says what is wrong and how to fix it.  The
CLI turns it into exit code 2 without a traceback.  A configuration that is
valid input but that vLLM itself would refuse is *not* an error here: it is a
plan with ``fits = False`` and vLLM's own message.
"""

from __future__ import annotations


class VllmFitError(ValueError):
    """Bad input: the message is one line, meant for the user."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        text = message.strip().rstrip(".") + "."
        if hint:
            text += " " + hint.strip()
        super().__init__(text)
        self.message = text


class UnknownModelError(VllmFitError):
    pass


class ConfigError(VllmFitError):
    pass


class FlagError(VllmFitError):
    pass
