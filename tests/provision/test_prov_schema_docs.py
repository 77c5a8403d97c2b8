"""docs/CONFIG.md and the config schema (provision/config.py) name the same keys, required-ness and defaults.

The prose of each key stays in the docs; what a reader must be able to trust
(is it there, must I give it, what if I leave it out) is checked here, and
so is every stack.yml line the docs tell a reader to write (docs/ORIGINAL.md,
docs/TESTING.md): it loads on the shipped stack.yml.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from provision import config
from provision.errors import ConfigError
from provision.schema import REQUIRED

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "CONFIG.md"


def documented() -> dict[str, tuple[str, str | None]]:
    """``section.key`` -> (required column, default column or None) from every key table.

    A table ends at the first line that is not a row, as Markdown renders it: a row after a blank line
    is not part of the table (it shows as a line of pipes), so it is not counted as documented.
    """
    found: dict[str, tuple[str, str | None]] = {}
    section = ""
    header: list[str] = []
    for line in DOCS.read_text().splitlines():
        heading = re.match(r"^## `([a-z_]+)`", line)
        if heading:
            section = heading.group(1)
            continue
        if not line.startswith("|"):
            header = []
            continue
        if line.startswith("| key |"):
            header = [c.strip() for c in line.strip("|").split("|")]
            continue
        row = re.match(r"^\| `([a-z_.]+)` \|", line)
        if row and section and header:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            name = f"{section}.{row.group(1)}"
            default = cells[header.index("default")] if "default" in header else None
            found[name] = (cells[header.index("required")], default)
    return found


def shown(value: Any) -> str:
    """A default as the docs write it (YAML flow style, no backticks)."""
    if isinstance(value, tuple):
        value = list(value)
    if value == "":
        return '""'
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def normal(cell: str) -> str:
    return cell.replace("`", "").strip().strip('"') if cell.strip() not in ('`""`', '""') else '""'


def schema() -> dict[str, tuple[bool, Any]]:
    """``section.key`` -> (required, default); a nested mapping's keys take their default from it."""
    keys = {path: (req, default) for path, req, default in config.keys()}
    for path, (req, default) in list(keys.items()):
        parent = path.rsplit(".", 1)[0]
        if default is REQUIRED and parent in keys and isinstance(keys[parent][1], str) and "{" in keys[parent][1]:
            keys[path] = (req, yaml.safe_load(keys[parent][1].strip("`"))[path.rsplit(".", 1)[1]])  # eod.uploads
    return keys


def has_children(path: str, keys: dict[str, Any]) -> bool:
    return any(k.startswith(path + ".") for k in keys)


def test_every_key_is_documented_and_every_documented_key_exists() -> None:
    docs, keys = documented(), schema()
    assert sorted(set(docs) - set(keys)) == []  # documented, but not in the schema
    # a mapping documented key by key (bucket.prefixes.deploy, ...) need not have a row of its own
    assert sorted(k for k in keys if k not in docs and not has_children(k, keys)) == []


def test_required_and_defaults_agree() -> None:
    docs = documented()
    for path, (req, default) in schema().items():
        if path not in docs:
            continue
        doc_required, doc_default = docs[path]
        assert doc_required.startswith("yes") == req, (path, doc_required)
        if doc_default is None:  # a table without a default column: every key there is required
            assert req, path
            continue
        expected = "" if default is REQUIRED else shown(default)
        assert normal(doc_default) == normal(expected), (path, doc_default, expected)


# --------------------------------------------------------------------------- lines the docs tell you to write

SECTIONS = set(config.SECTIONS)


def config_lines(text: str) -> list[dict[str, Any]]:
    """Every code span of ``text`` that is a stack.yml fragment: a mapping of sections (``instance: {...}``)."""
    found = []
    for span in re.findall(r"`([a-z_]+: \{[^`]*\})`", text):
        if "..." in span:  # a shape, not a value (e.g. `bucket: {prefixes: {deploy: ..., secrets: ...}}`)
            continue
        fragment = yaml.safe_load(span)
        if isinstance(fragment, dict) and set(fragment) <= SECTIONS:
            found.append(fragment)
    return found


def merged(raw: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    for k, v in fragment.items():
        out[k] = merged(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def load_with(fragment: dict[str, Any], tmp_path: Path) -> config.Config:
    raw = yaml.safe_load((ROOT / "stack.yml").read_text())
    path = tmp_path / "stack.yml"
    path.write_text(yaml.safe_dump(merged(raw, fragment), sort_keys=False))
    return config.load(path, env={})


def test_every_line_that_changes_back_to_the_original_loads_on_the_shipped_stack_yml(tmp_path: Path) -> None:
    """docs/ORIGINAL.md's "back to the original" lines, each written into the repository's stack.yml."""
    fragments = config_lines((ROOT / "docs" / "ORIGINAL.md").read_text())
    assert len(fragments) >= 7, fragments  # the table's lines were found, not skipped
    for fragment in fragments:
        load_with(fragment, tmp_path)  # raises ConfigError with every problem
    arm = [f for f in fragments if f.get("instance", {}).get("architecture") == "arm64"]
    assert len(arm) == 1
    cfg = load_with(arm[0], tmp_path)
    assert (cfg.instance.type, cfg.instance.architecture) == ("c6g.2xlarge", "arm64")
    assert cfg.instance.ami_ssm_parameter.endswith("-arm64")


def test_the_arm64_advice_for_aws_check_loads_on_the_shipped_stack_yml(tmp_path: Path) -> None:
    fragments = [f for f in config_lines((ROOT / "docs" / "TESTING.md").read_text())
                 if f.get("instance", {}).get("architecture") == "arm64"]
    assert len(fragments) == 1
    cfg = load_with(fragments[0], tmp_path)
    assert cfg.instance.architecture == "arm64" and cfg.instance.ami_ssm_parameter.endswith("-arm64")


def test_half_the_arm64_change_is_refused_on_the_shipped_stack_yml(tmp_path: Path) -> None:
    """Why the docs give all three keys: the shipped stack.yml names the x86_64 image's parameter."""
    with pytest.raises(ConfigError, match=r"instance\.ami_ssm_parameter: .* names an x86_64 image"):
        load_with({"instance": {"type": "c6g.2xlarge", "architecture": "arm64"}}, tmp_path)
