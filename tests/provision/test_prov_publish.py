"""provision/publish.py: the operator side of the manifest contract (the host's side: tests/workspace_sync)."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from example_release import BUCKET, CODE_DIR, KEYS_FILE, PREFIXES, SECRET_VALUES, TOKEN_FILE, body, do_publish

from provision.codearchive import build_code_archive, build_code_release
from provision.errors import PublishError
from provision.publish import publish_token
from provision.wheelhouse import build_wheelhouse, host_platforms


class Recorder:
    """Records every S3 operation a client makes, in order, with its key (botocore event hook)."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, str]] = []
        client.meta.events.register("before-parameter-build.s3.*", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_kwargs: Any) -> None:
        self.calls.append((model.name, str(params.get("Key", ""))))

    def puts(self) -> list[str]:
        return [key for name, key in self.calls if name == "PutObject"]


def archive_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getnames()


def test_build_wheelhouse_downloads_host_wheels(wheelhouse: Path, tmp_path: Path) -> None:
    assert [p.name for p in wheelhouse.iterdir()] == ["six-1.16.0-py2.py3-none-any.whl"]
    bad = tmp_path / "requirements.txt"
    bad.write_text("no-such-package-simpletrader==9.9\n")
    with pytest.raises(PublishError, match="pip download failed"):
        build_wheelhouse(bad, tmp_path / "out", log=lambda _m: None)


def test_manifest_lists_every_object_with_its_hash(s3: Any, wheelhouse: Path) -> None:
    lines: list[str] = []
    manifest = do_publish(s3, wheelhouse, log=lines.append)
    assert manifest["version"] == 1
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", manifest["release"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["created"])
    assert json.loads(body(s3, "deploy/manifest.json")) == manifest
    roles = {o["role"]: o["key"] for o in manifest["objects"]}
    release = manifest["release"]
    assert roles == {
        "code": f"deploy/releases/{release}/code.tar.gz",
        "requirements": f"deploy/releases/{release}/requirements.txt",
        "wheel": "deploy/wheelhouse/six-1.16.0-py2.py3-none-any.whl",
        "keys": "secrets/keys.json",
        "token": "secrets/access_token.txt",
    }
    for obj in manifest["objects"]:
        data = body(s3, obj["key"])
        assert obj["size"] == len(data)
        assert obj["sha256"] == hashlib.sha256(data).hexdigest()
    assert body(s3, "secrets/keys.json") == KEYS_FILE.read_bytes()
    names = archive_names(body(s3, roles["code"]))
    assert "src/setup/setup.py" in names and "requirements.txt" in names
    log = "\n".join(lines)
    assert "keys: api_key, api_secret, user_id" in log
    for secret in SECRET_VALUES:
        assert secret not in log


def test_manifest_is_written_last_and_wheels_only_when_missing(s3: Any, wheelhouse: Path) -> None:
    rec = Recorder(s3)
    do_publish(s3, wheelhouse)
    puts = rec.puts()
    assert puts[-1] == "deploy/manifest.json"
    assert puts.count("deploy/manifest.json") == 1
    assert "deploy/wheelhouse/six-1.16.0-py2.py3-none-any.whl" in puts

    rec.calls.clear()
    do_publish(s3, wheelhouse)
    puts = rec.puts()
    assert puts[-1] == "deploy/manifest.json"
    assert not [k for k in puts if "wheelhouse" in k]
    assert ("HeadObject", "deploy/wheelhouse/six-1.16.0-py2.py3-none-any.whl") in rec.calls


def test_code_archive_is_deterministic(tmp_path: Path) -> None:
    code = tmp_path / "code"
    shutil.copytree(CODE_DIR, code)
    first = build_code_archive(code)
    for path in code.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    assert build_code_archive(code) == first
    # Caches, trade data and secrets in the working copy stay out.
    (code / "src" / "setup" / "__pycache__").mkdir()
    (code / "src" / "setup" / "__pycache__" / "x.cpython-39.pyc").write_bytes(b"\0")
    (code / "trade_logs" / "2026-01-01").mkdir(parents=True)
    (code / "trade_logs" / "2026-01-01" / "trades.csv").write_text("t\n")
    (code / "ledger").mkdir()
    (code / "ledger" / "ledger.csv").write_text("l\n")
    (code / ".git").mkdir()
    (code / ".git" / "HEAD").write_text("ref\n")
    (code / "keys.json").write_text("{}")
    (code / "access_token.txt").write_text("t")
    # ... at any depth, and key files and dotenv files too
    (code / "src" / "keys.json").write_text("{}")
    (code / "src" / "setup" / "access_token.txt").write_text("t")
    (code / "src" / "deploy.pem").write_text("k")
    (code / "src" / ".env").write_text("K=v")
    assert build_code_archive(code) == first
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        for member in tar.getmembers():
            assert (member.uid, member.gid, member.uname, member.gname, member.mtime) == (0, 0, "", "", 0)
            assert member.mode in (0o644, 0o755)
    assert gzip.decompress(first)  # a plain gzip stream with a fixed header
    assert first[4:8] == b"\0\0\0\0"  # gzip mtime field
    (code / "src" / "setup" / "setup.py").write_text("changed\n")
    assert build_code_archive(code) != first


def test_code_index_points_at_each_file_in_the_archive(tmp_path: Path) -> None:
    code = tmp_path / "code"
    shutil.copytree(CODE_DIR, code)
    (code / "bin").mkdir()
    (code / "bin" / "run.sh").write_text("#!/bin/sh\n")
    (code / "bin" / "run.sh").chmod(0o755)
    (code / "src" / "empty.txt").write_bytes(b"")
    (code / "latest").symlink_to("src/setup")
    archive, index = build_code_release(code)
    assert archive == build_code_archive(code)
    files = {e["path"]: e for e in index if e["type"] == "file"}
    on_disk = {p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file() and not p.is_symlink()}
    assert set(files) == on_disk
    assert {e["path"]: e["target"] for e in index if e["type"] == "symlink"} == {"latest": "src/setup"}
    assert {e["path"] for e in index if e["type"] == "dir"} == {"bin", "src", "src/setup"}
    # The whole is one ordinary .tar.gz whose entries are the index's, in the same order.
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        assert [m.name for m in tar.getmembers()] == [e["path"] for e in index]
        for m in tar.getmembers():
            if m.isfile():
                content = tar.extractfile(m)
                assert content is not None and content.read() == (code / m.name).read_bytes()
    # Each file's gzip member stands alone: one ranged GET and one decompression give the file.
    for path, e in files.items():
        data = (code / path).read_bytes()
        assert (e["size"], e["sha256"], e["mode"]) == (len(data), hashlib.sha256(data).hexdigest(),
                                                      0o755 if path == "bin/run.sh" else 0o644)
        member = gzip.decompress(archive[e["offset"] : e["offset"] + e["length"]])
        padded = (len(data) + 511) // 512 * 512
        assert member[len(member) - padded :][: len(data)] == data
        assert (len(member) - padded) % 512 == 0 and len(member) > padded


def test_publish_writes_the_code_index_beside_the_archive(s3: Any, wheelhouse: Path) -> None:
    manifest = do_publish(s3, wheelhouse)
    code = next(o for o in manifest["objects"] if o["role"] == "code")
    ref = manifest["code_index"]
    assert ref["key"] == code["key"].replace("code.tar.gz", "code-index.json")
    data = s3.get_object(Bucket=BUCKET, Key=ref["key"])["Body"].read()
    assert (len(data), hashlib.sha256(data).hexdigest()) == (ref["size"], ref["sha256"])
    doc = json.loads(data)
    assert doc["version"] == 1
    assert doc["archive"] == {"key": code["key"], "size": code["size"], "sha256": code["sha256"]}
    assert {e["path"] for e in doc["entries"] if e["type"] == "file"} == {
        "requirements.txt", "src/setup/common.py", "src/setup/pre_market_setup.py", "src/setup/closure_setup.py",
        "src/setup/setup.py"}


def test_outside_symlink_is_refused(tmp_path: Path) -> None:
    code = tmp_path / "code"
    shutil.copytree(CODE_DIR, code)
    (code / "link").symlink_to("/etc")
    with pytest.raises(PublishError, match="outside the code directory"):
        build_code_archive(code)


def test_publish_token_touches_only_the_token_and_manifest(s3: Any, wheelhouse: Path, tmp_path: Path) -> None:
    manifest = do_publish(s3, wheelhouse)
    token = tmp_path / "access_token.txt"
    token.write_text("FAKE-TOKEN-NOT-REAL-NEXT-DAY\n")
    rec = Recorder(s3)
    lines: list[str] = []
    updated = publish_token(s3, bucket=BUCKET, prefixes=PREFIXES, token_file=token, log=lines.append)
    assert rec.puts() == ["secrets/access_token.txt", "deploy/manifest.json"]
    assert "FAKE-TOKEN-NOT-REAL-NEXT-DAY" not in "\n".join(lines)
    assert body(s3, "secrets/access_token.txt") == token.read_bytes()
    stored = json.loads(body(s3, "deploy/manifest.json"))
    assert stored == updated
    before = {o["role"]: o for o in manifest["objects"]}
    after = {o["role"]: o for o in stored["objects"]}
    after_token, before_token = after.pop("token"), before.pop("token")
    assert after == before and after_token != before_token
    assert after_token["sha256"] == hashlib.sha256(token.read_bytes()).hexdigest()
    assert after_token["size"] == token.stat().st_size
    # When the token was uploaded: what the start function judges freshness by, without reading it.
    for entry in (before_token, after_token):
        stamp = dt.datetime.strptime(entry["published_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
        assert abs((dt.datetime.now(dt.timezone.utc) - stamp).total_seconds()) < 120
    assert after_token["published_at"] >= before_token["published_at"]
    assert (stored["release"], stored["created"]) == (manifest["release"], manifest["created"])
    assert stored["code_index"] == manifest["code_index"]


def test_publish_token_without_a_manifest(s3: Any) -> None:
    with pytest.raises(PublishError, match="run a full `publish` first"):
        publish_token(s3, bucket=BUCKET, prefixes=PREFIXES, token_file=TOKEN_FILE, log=lambda _m: None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"code_dir": Path("/nonexistent/code")}, "code directory /nonexistent/code does not exist"),
        ({"requirements": Path("/nonexistent/requirements.txt")}, "requirements file"),
        ({"keys_file": Path("/nonexistent/keys.json")}, "keys file /nonexistent/keys.json does not exist"),
        ({"keys_file": "BADJSON"}, "is not valid JSON"),
        ({"token_file": "EMPTY"}, "is empty"),
        ({"token_file": Path("/nonexistent/token")}, "token file /nonexistent/token does not exist"),
        ({"wheelhouse": "EMPTYDIR"}, "has no .whl files"),
    ],
)
def test_bad_inputs_fail_before_any_aws_call(
    moto: Any, tmp_path: Path, wheelhouse: Path, change: dict[str, Any], message: str
) -> None:
    s3 = boto3.client("s3", region_name="ap-south-1")
    calls: list[str] = []
    s3.meta.events.register("before-call.*.*", lambda model, **_kw: calls.append(model.name))
    for key, value in list(change.items()):
        if value == "BADJSON":
            bad = tmp_path / "keys.json"
            bad.write_text('{"api_key": "FAKE-KEY-NOT-REAL-0001",')
            change[key] = bad
        elif value == "EMPTY":
            empty = tmp_path / "token.txt"
            empty.write_text("  \n")
            change[key] = empty
        elif value == "EMPTYDIR":
            (tmp_path / "wheels").mkdir()
            change[key] = tmp_path / "wheels"
    kwargs: dict[str, Any] = {"wheelhouse": wheelhouse, **change}
    with pytest.raises(PublishError, match=re.escape(message)) as info:
        do_publish(s3, **kwargs)
    assert calls == []
    assert "FAKE-KEY-NOT-REAL-0001" not in str(info.value)


def test_without_token_check_a_token_given_anyway_is_published(s3: Any, wheelhouse: Path) -> None:
    manifest = do_publish(s3, wheelhouse, token_required=False)
    token = [o for o in manifest["objects"] if o["role"] == "token"]
    assert len(token) == 1 and token[0]["size"] == TOKEN_FILE.stat().st_size and "published_at" in token[0]
    assert body(s3, "secrets/access_token.txt") == TOKEN_FILE.read_bytes()


def test_publish_builds_the_wheelhouse_when_none_is_given(s3: Any) -> None:
    lines: list[str] = []
    manifest = do_publish(s3, None, log=lines.append)
    wheels = [o["key"] for o in manifest["objects"] if o["role"] == "wheel"]
    assert wheels == ["deploy/wheelhouse/six-1.16.0-py2.py3-none-any.whl"]
    assert any("pip download for Python 3.9" in line for line in lines)


def test_host_platforms() -> None:
    assert host_platforms("x86_64")[-1] == "manylinux2014_x86_64"
    assert all(tag.endswith("aarch64") for tag in host_platforms("arm64"))
    with pytest.raises(PublishError, match="not x86_64 or arm64"):
        host_platforms("mips")


def test_every_call_names_the_expected_owner(s3: Any, wheelhouse: Path) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def spy(event_name: str, params: dict[str, Any], **_kwargs: Any) -> None:
        calls.append((event_name.rsplit(".", 1)[-1], dict(params)))

    s3.meta.events.register("provide-client-params.s3.*", spy)
    account = "123456789012"  # the emulator's account
    do_publish(s3, wheelhouse, expected_owner=account)
    publish_token(
        s3,
        bucket=BUCKET,
        prefixes=PREFIXES,
        token_file=TOKEN_FILE,
        log=lambda _m: None,
        expected_owner=account,
    )
    assert {op for op, _ in calls} == {"PutObject", "HeadObject", "GetObject"}
    assert all(params.get("ExpectedBucketOwner") == account for _, params in calls)
