#!/usr/bin/env python3
"""The workspace_sync scenario's AWS side: the local emulator and the bucket.

Runs on the controller with the project's Python (boto3, moto, pip)::

    emulator.py start STATE_DIR                 moto_server on 0.0.0.0 (the test host reaches it)
    emulator.py stop STATE_DIR
    emulator.py publish STATE_DIR BUCKET CACHE  create the bucket, publish the example release
                                                (wheelhouse for Python 3.9 cached in CACHE)
    emulator.py break-hash STATE_DIR BUCKET     rewrite the manifest with a wrong sha256 for the code
    emulator.py drop-object STATE_DIR BUCKET    delete the release's requirements.txt, manifest untouched
    emulator.py tool-wheels DEST PKG...         the role's tool wheels for the host, built once into DEST
                                                with publish's builder (DEST/.complete marks it done)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))

from devtools import localaws  # noqa: E402

EXAMPLE = ROOT / "example"
PREFIXES = {"deploy": "deploy/", "secrets": "secrets/", "logs": "logs/", "ledger": "ledger/"}
MANIFEST = PREFIXES["deploy"] + "manifest.json"


def s3_client(state_dir: Path):  # type: ignore[no-untyped-def]
    import boto3

    info = json.loads((state_dir / "server.json").read_text())
    os.environ.update(localaws.FAKE_ENV)
    return boto3.client("s3", region_name="ap-south-1", endpoint_url=info["endpoint"])


def start(state_dir: Path) -> None:
    bind_all = "0.0.0.0"  # noqa: S104 - the test host reaches the emulator through its gateway
    cmd = [
        sys.executable,
        "-m",
        "devtools.localaws",
        "--state-dir",
        str(state_dir),
        "start",
        "--bind",
        bind_all,
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)
    print(json.dumps({"port": json.loads((state_dir / "server.json").read_text())["port"]}))


def stop(state_dir: Path) -> None:
    if (state_dir / "server.json").exists():
        subprocess.run(
            [sys.executable, "-m", "devtools.localaws", "--state-dir", str(state_dir), "stop"],
            check=True,
            cwd=ROOT,
        )


def publish(state_dir: Path, bucket: str, cache: Path) -> None:
    from provision.publish import publish as do_publish
    from provision.wheelhouse import build_wheelhouse

    s3 = s3_client(state_dir)
    existing = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    requirements = EXAMPLE / "simpletrader" / "requirements.txt"
    wheelhouse = cache / hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    if not any(wheelhouse.glob("*.whl")):
        build_wheelhouse(requirements, wheelhouse, log=lambda _m: None)
    manifest = do_publish(
        s3,
        bucket=bucket,
        prefixes=PREFIXES,
        code_dir=EXAMPLE / "simpletrader",
        requirements=requirements,
        keys_file=EXAMPLE / "secrets" / "keys.json",
        token_file=EXAMPLE / "secrets" / "access_token.txt",
        wheelhouse=wheelhouse,
        log=lambda _m: None,
    )
    print(json.dumps({"release": manifest["release"]}))


def break_hash(state_dir: Path, bucket: str) -> None:
    s3 = s3_client(state_dir)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=MANIFEST)["Body"].read())
    for obj in manifest["objects"]:
        if obj["role"] == "code":
            obj["sha256"] = "0" * 64
    manifest["release"] += "-badhash"
    s3.put_object(Bucket=bucket, Key=MANIFEST, Body=json.dumps(manifest).encode())
    print(json.dumps({"release": manifest["release"]}))


def drop_object(state_dir: Path, bucket: str) -> None:
    s3 = s3_client(state_dir)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=MANIFEST)["Body"].read())
    key = next(o["key"] for o in manifest["objects"] if o["role"] == "requirements")
    s3.delete_object(Bucket=bucket, Key=key)
    print(json.dumps({"release": manifest["release"], "dropped": key}))


def tool_wheels(dest: Path, packages: list[str]) -> None:
    from provision.wheelhouse import build_wheelhouse

    if (dest / ".complete").exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    requirements = dest / ".requirements.txt"
    requirements.write_text("\n".join(packages) + "\n")
    build_wheelhouse(requirements, dest, log=lambda _m: None)
    (dest / ".complete").write_text("")
    print(json.dumps({"wheels": sorted(p.name for p in dest.glob("*.whl"))}))


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, state_dir, rest = argv[0], Path(argv[1]), argv[2:]
    if cmd == "start":
        start(state_dir)
    elif cmd == "stop":
        stop(state_dir)
    elif cmd == "publish":
        publish(state_dir, rest[0], Path(rest[1]))
    elif cmd == "break-hash":
        break_hash(state_dir, rest[0])
    elif cmd == "drop-object":
        drop_object(state_dir, rest[0])
    elif cmd == "tool-wheels":
        tool_wheels(state_dir, rest)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
