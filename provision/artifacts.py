"""The operator's inputs of a release, checked before any AWS call (``publish``).

The code directory, requirements.txt, keys.json, the access token and an
optional wheelhouse: each check names the file, what is wrong and the config
key to fix. The content of keys.json and of the token is never repeated in a
message (only key names and sizes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from provision.errors import PublishError


def check_file(path: Path, what: str, fix: str) -> None:
    if not path.exists():
        raise PublishError(f"{what} {path} does not exist; {fix}")
    if not path.is_file():
        raise PublishError(f"{what} {path} is not a file; {fix}")
    if not os.access(path, os.R_OK):
        raise PublishError(f"{what} {path} is not readable; check its permissions")


def validate_keys(keys_file: Path) -> list[str]:
    check_file(keys_file, "keys file", "point artifacts.keys_file at your keys.json")
    try:
        data = json.loads(keys_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        # The parser's message can quote the content: do not repeat it.
        raise PublishError(
            f"keys file {keys_file} is not valid JSON; fix its syntax "
            "(e.g. with `python -m json.tool` locally)"
        ) from None
    if not isinstance(data, dict) or not data:
        raise PublishError(f"keys file {keys_file} must hold a non-empty JSON object of key names to values")
    return sorted(str(k) for k in data)


def validate_token(token_file: Path, required: bool = True) -> bool:
    """Check the token file; False when there is none and none is ``required`` (``host.token_check: off``:
    a program that logs in to the broker itself). A token given anyway is checked and published."""
    if not required:
        if not token_file.exists():
            return False
        if token_file.is_file() and os.access(token_file, os.R_OK) and not token_file.read_bytes().strip():
            return False
    check_file(token_file, "token file", "point artifacts.token_file (or --token) at access_token.txt")
    try:
        text = token_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PublishError(f"token file {token_file} is not UTF-8 text") from None
    if not text.strip():
        raise PublishError(f"token file {token_file} is empty; write today's Zerodha access token into it")
    return True


def requirement_lines(requirements: Path) -> list[str]:
    lines = []
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def validate(
    code_dir: Path, requirements: Path, keys_file: Path, token_file: Path, wheelhouse: Path | None,
    token_required: bool = True,
) -> tuple[list[str], list[str], list[Path], bool]:
    if not code_dir.is_dir():
        raise PublishError(
            f"code directory {code_dir} does not exist or is not a directory; "
            "point artifacts.code_dir at your trading code base"
        )
    check_file(requirements, "requirements file", "point artifacts.requirements at requirements.txt")
    reqs = requirement_lines(requirements)
    key_names = validate_keys(keys_file)
    has_token = validate_token(token_file, token_required)
    wheels: list[Path] = []
    if wheelhouse is not None:
        if not wheelhouse.is_dir():
            raise PublishError(
                f"wheelhouse {wheelhouse} is not a directory; build it with build_wheelhouse()"
            )
        wheels = sorted(p for p in wheelhouse.iterdir() if p.is_file() and p.name.endswith(".whl"))
        if reqs and not wheels:
            raise PublishError(
                f"wheelhouse {wheelhouse} has no .whl files but {requirements} lists packages; the host "
                "installs with --no-index: build it with build_wheelhouse() or omit it to build one here"
            )
    return key_names, reqs, wheels, has_token
