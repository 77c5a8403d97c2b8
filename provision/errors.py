"""Expected failures: the CLI prints their message in one or two lines, without a traceback."""

from __future__ import annotations


class ProvisionError(Exception):
    """A failure the operator can act on; ``str(error)`` says what failed and what to do next."""


class ConfigError(ProvisionError):
    """The config file has problems; every one of them is in ``problems`` (``key.path: message``)."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = list(problems)
        noun = "problem" if len(problems) == 1 else "problems"
        lines = [f"{path}: {len(problems)} {noun}; nothing was sent to AWS"]
        lines += [f"  {p}" for p in problems]
        super().__init__("\n".join(lines))


class PublishError(ProvisionError, ValueError):
    """Bad input or a bucket state that publishing cannot work with; the message says what to do."""
