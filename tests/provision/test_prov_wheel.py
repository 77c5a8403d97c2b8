"""provision.wheel: the host routine's wheel, byte for byte the same from the same sources, installable by pip."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from provhelpers import ROOT

from provision.errors import ProvisionError
from provision.wheel import build_wheel

PROJECT = ROOT / "roles" / "workspace_sync" / "files"
WHEEL_NAME = "simpletrader_workspace-1.0.0-py3-none-any.whl"


def copy_project(dest: Path) -> Path:
    shutil.copytree(PROJECT, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_same_sources_give_the_same_bytes(tmp_path: Path) -> None:
    first = build_wheel(PROJECT, tmp_path / "a")
    # A copy: other inode numbers, other times, a stray bytecode cache; none of it may matter.
    copy = copy_project(tmp_path / "copy")
    for path in copy.rglob("*"):
        os.utime(path, (1_900_000_000, 1_900_000_000))
    (copy / "simpletrader_workspace" / "__pycache__").mkdir()
    (copy / "simpletrader_workspace" / "__pycache__" / "cli.cpython-39.pyc").write_bytes(b"\0")
    second = build_wheel(copy, tmp_path / "b")
    assert first.name == second.name == WHEEL_NAME
    assert first.read_bytes() == second.read_bytes()

    # A changed module gives another wheel: the role reinstalls only then.
    with open(copy / "simpletrader_workspace" / "clock.py", "a") as fh:
        fh.write("# changed\n")
    assert build_wheel(copy, tmp_path / "c").read_bytes() != first.read_bytes()


def test_record_and_metadata(tmp_path: Path) -> None:
    wheel = build_wheel(PROJECT, tmp_path)
    dist_info = "simpletrader_workspace-1.0.0.dist-info"
    with zipfile.ZipFile(wheel) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names[-1] == f"{dist_info}/RECORD"
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) and i.external_attr >> 16 == 0o100644 for i in infos)
        package = [n for n in names if not n.startswith(dist_info)]
        assert package == sorted(package) and names[: len(package)] == package
        sources = sorted(p.relative_to(PROJECT).as_posix() for p in (PROJECT / "simpletrader_workspace").glob("*.py"))
        assert package == sources

        record = zf.read(f"{dist_info}/RECORD").decode().splitlines()
        listed = {}
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            listed[name] = (digest, size)
        assert set(listed) == set(names)
        assert listed[f"{dist_info}/RECORD"] == ("", "")
        for name in names[:-1]:
            data = zf.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert listed[name] == (f"sha256={expected}", str(len(data))), name

        metadata = zf.read(f"{dist_info}/METADATA").decode().splitlines()
        assert {"Metadata-Version: 2.1", "Name: simpletrader-workspace", "Version: 1.0.0",
                "Requires-Python: >=3.9", "Requires-Dist: botocore"} <= set(metadata)
        assert "Tag: py3-none-any" in zf.read(f"{dist_info}/WHEEL").decode().splitlines()
        assert zf.read(f"{dist_info}/entry_points.txt").decode() == (
            "[console_scripts]\nsimpletrader-workspace = simpletrader_workspace.cli:main\n")


def test_pip_installs_it_and_the_command_runs(tmp_path: Path) -> None:
    wheel = build_wheel(PROJECT, tmp_path / "dist")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    str(wheel)], check=True, env=env, timeout=300)
    helped = subprocess.run([str(venv / "bin" / "simpletrader-workspace"), "--help"], capture_output=True,
                            text=True, env=env, check=False, timeout=60, cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "{sync,eod,status,migrate}" in helped.stdout and "--result-json" in helped.stdout


def test_the_command_line_prints_the_path(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "provision.wheel", str(PROJECT), str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{tmp_path / WHEEL_NAME}\n"
    assert [p.name for p in tmp_path.iterdir()] == [WHEEL_NAME]


def test_metadata_it_cannot_carry_is_refused(tmp_path: Path) -> None:
    copy = copy_project(tmp_path / "copy")
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("[project]\n", "[project]\nreadme = \"README.md\"\n"))
    with pytest.raises(ProvisionError, match="keys this builder does not handle: readme"):
        build_wheel(copy, tmp_path / "out")
    shutil.rmtree(copy / "simpletrader_workspace")
    pyproject.write_text(pyproject.read_text().replace('readme = "README.md"\n', ""))
    with pytest.raises(ProvisionError, match="is not a package"):
        build_wheel(copy, tmp_path / "out")
