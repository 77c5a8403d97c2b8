"""`provision publish` keeps the newest releases and warns when the code lacks the closure script."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import boto3
import pytest
import yaml
from provhelpers import ROOT, Runner

from provision import publish, releases

BUCKET = "simpletrader-working-bucket"


@pytest.fixture
def code(run: Runner, tmp_path: Path) -> Path:
    """The example program copied, with requirements that need no wheel, named in the config."""
    code_dir = tmp_path / "code"
    shutil.copytree(ROOT / "example" / "simpletrader", code_dir)
    (code_dir / "requirements.txt").write_text("# nothing to install\n")
    raw = yaml.safe_load(run.config.read_text())
    raw["artifacts"]["code_dir"] = str(code_dir)
    raw["artifacts"]["requirements"] = str(code_dir / "requirements.txt")
    raw["bucket"]["keep_releases"] = 2
    run.config.write_text(yaml.safe_dump(raw))
    return code_dir


def test_publish_keeps_the_newest_releases(run: Runner, code: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("up", "--yes").code == 0
    clock = iter(dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i)
                 for i in range(100))
    monkeypatch.setattr(publish, "_utc_now", lambda: next(clock))
    published = []
    for day in range(4):
        (code / "src" / "setup" / "version.py").write_text(f"VERSION = {day}\n")
        out = run("publish")
        assert out.code == 0, out.err
        published.append(out.out.splitlines()[-1].split()[2])
    left = releases.release_ids(boto3.client("s3"), BUCKET, "deploy/")
    assert left == published[-2:], out.out  # the two newest; the manifest's is the last
    assert "removed 1 old release(s)" in out.out
    versions = boto3.client("s3").list_object_versions(Bucket=BUCKET, Prefix=f"deploy/releases/{published[0]}/")
    assert versions.get("DeleteMarkers")  # deleted, kept as noncurrent versions until the lifecycle rule


def test_publish_warns_when_the_closure_script_is_missing(run: Runner, code: Path) -> None:
    assert run("up", "--yes").code == 0
    assert "closure_script" not in run("publish").out
    (code / "src" / "setup" / "closure_setup.py").unlink()
    out = run("publish")
    assert out.code == 0, out.err
    assert ("warning: eod.closure_script src/setup/closure_setup.py is not in " + str(code)) in out.out



def test_publish_needs_no_token_file_when_token_check_is_off(run: Runner, code: Path, tmp_path: Path) -> None:
    assert run("up", "--yes").code == 0
    raw = yaml.safe_load(run.config.read_text())
    raw["artifacts"]["token_file"] = str(tmp_path / "access_token.txt")  # never written
    run.config.write_text(yaml.safe_dump(raw))
    refused = run("publish")
    assert refused.code == 1
    assert f"token file {tmp_path / 'access_token.txt'} does not exist" in refused.err
    raw["host"]["token_check"] = "off"
    run.config.write_text(yaml.safe_dump(raw))
    out = run("publish")
    assert out.code == 0, out.err
    assert "publish: no access token (host.token_check: off, and no token file)" in out.out
    manifest = json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key="deploy/manifest.json")["Body"].read())
    assert [o["size"] for o in manifest["objects"] if o["role"] == "token"] == [0]
