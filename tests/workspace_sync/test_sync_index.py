"""The sync's index path: unchanged files kept, changed ones fetched by range; and the venv installers.

The routine runs against the emulator as in test_sync.py. A next release on a
host that has a workspace is built from the code index (docs/CONTRACTS.md):
every file is either one of the previous workspace's, hashed now and hard-linked,
or its own gzip member of the archive, fetched with a ranged GET and checked.
The result must be the same tree the whole archive gives.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from example_release import BUCKET, CODE_DIR, body, do_publish
from simpletrader_workspace import codebase, codeindex, config, fsutil
from simpletrader_workspace.s3 import Bucket
from wshelpers import (
    Host,
    assert_workspace_intact,
    canary,
    put_archive_without_index,
    put_code_index,
    routine_env,
    snapshot,
)

# What sync adds to a release directory besides the code base.
NOT_CODE = {"keys.json", "access_token.txt", ".simpletrader-release.json", ".simpletrader-uploaded.json",
            "trade_logs", "ledger"}


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry of a code tree: files by mode and sha256, directories by mode, links by target."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if d not in NOT_CODE]
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = (rel / name).as_posix()
            if rel == Path(".") and name in NOT_CODE:
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[key] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[key] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[key] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def archive_tree(s3: Any, manifest: dict[str, Any], dest: Path) -> dict[str, tuple[Any, ...]]:
    """The tree the release's whole code archive gives."""
    code = next(o for o in manifest["objects"] if o["role"] == "code")
    archive = dest.with_suffix(".tar.gz")
    archive.write_bytes(body(s3, code["key"]))
    dest.mkdir()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            tar.extract(member, dest, set_attrs=False)
            target = dest / member.name
            if member.isfile() or member.isdir():
                target.chmod(member.mode)
    return tree(dest)


def code_copy(tmp_path: Path, name: str) -> Path:
    code = tmp_path / name
    shutil.copytree(CODE_DIR, code)
    (code / "models").mkdir()
    for i in range(20):  # enough content that a few changed files are far less than the archive
        (code / "models" / f"weights_{i:02d}.bin").write_bytes(hashlib.sha256(str(i).encode()).digest() * 2048)
    (code / "latest").symlink_to("src/setup")
    return code


def publish_code(s3: Any, wheelhouse: Path, code: Path) -> dict[str, Any]:
    return do_publish(s3, wheelhouse, code_dir=code, requirements=code / "requirements.txt")


def last_built(stdout: str) -> tuple[int, int, int, int]:
    match = re.search(r"built the code base: (\d+) files, (\d+) unchanged since the previous workspace, "
                      r"(\d+) fetched in (\d+) ranged request", stdout)
    assert match, stdout
    files, reused, fetched, requests = (int(g) for g in match.groups())
    return files, reused, fetched, requests


def test_next_release_keeps_unchanged_files_and_fetches_the_changed(
        host: Host, s3: Any, wheelhouse: Path, tmp_path: Path) -> None:
    code = code_copy(tmp_path, "code")
    publish_code(s3, wheelhouse, code)
    first = host.run("sync")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "extracted" in first.stdout  # a new host: the whole archive
    first_dir = Path(host.ready()["release_dir"])  # type: ignore[index]

    (code / "src" / "setup" / "common.py").write_text("# changed for the next release\n")
    (code / "src" / "setup" / "new_module.py").write_text("VALUE = 1\n")
    manifest = publish_code(s3, wheelhouse, code)
    second = host.run("sync")
    assert second.returncode == 0, second.stdout + second.stderr
    files, reused, fetched, requests = last_built(second.stdout)
    assert (fetched, requests) == (2, 1) and reused == files - 2
    # Code by index; the one wheel is not even read: its virtualenv is built.
    assert ("downloaded and verified 3 objects (the code by its index; 1 wheel(s) not needed: the virtualenv is "
            "built)") in second.stdout
    second_dir = Path(host.ready()["release_dir"])  # type: ignore[index]
    assert second_dir != first_dir

    # The same tree as the whole archive, file for file, mode for mode, link for link.
    assert tree(second_dir) == archive_tree(s3, manifest, tmp_path / "from-archive")
    assert (second_dir / "src" / "setup" / "common.py").read_text() == "# changed for the next release\n"
    # Unchanged files are the previous workspace's, linked, not copied.
    weights = "models/weights_03.bin"
    assert os.stat(second_dir / weights).st_ino == os.stat(first_dir / weights).st_ino
    assert os.stat(second_dir / "src/setup/common.py").st_ino != os.stat(first_dir / "src/setup/common.py").st_ino
    assert os.path.islink(second_dir / "latest") and os.readlink(second_dir / "latest") == "src/setup"


def test_a_file_edited_in_the_workspace_is_fetched_again(
        host: Host, s3: Any, wheelhouse: Path, tmp_path: Path) -> None:
    code = code_copy(tmp_path, "code")
    publish_code(s3, wheelhouse, code)
    assert host.run("sync").returncode == 0
    # Someone edits a code file in place on the host (same size), and another's mode changes.
    edited = host.workdir / "src" / "setup" / "common.py"
    original = edited.read_bytes()
    edited.write_bytes(bytes([original[0] ^ 1]) + original[1:])
    (host.workdir / "models" / "weights_05.bin").chmod(0o600)
    manifest = publish_code(s3, wheelhouse, code)  # the same code, a new release
    result = host.run("sync")
    assert result.returncode == 0, result.stdout + result.stderr
    _, _, fetched, _ = last_built(result.stdout)
    assert fetched == 2
    assert (host.workdir / "src" / "setup" / "common.py").read_bytes() == original
    assert tree(Path(os.path.realpath(host.workdir))) == archive_tree(s3, manifest, tmp_path / "from-archive")


def test_most_of_the_code_changed_takes_the_whole_archive(
        host: Host, s3: Any, wheelhouse: Path, tmp_path: Path) -> None:
    code = code_copy(tmp_path, "code")
    publish_code(s3, wheelhouse, code)
    assert host.run("sync").returncode == 0
    for weights in (code / "models").iterdir():
        weights.write_bytes(weights.read_bytes()[::-1])
    manifest = publish_code(s3, wheelhouse, code)
    result = host.run("sync")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "extracted" in result.stdout and "built the code base" not in result.stdout
    assert tree(Path(os.path.realpath(host.workdir))) == archive_tree(s3, manifest, tmp_path / "from-archive")


def test_index_path_refuses_a_tampered_member(host: Host, s3: Any, wheelhouse: Path, tmp_path: Path) -> None:
    code = code_copy(tmp_path, "code")
    publish_code(s3, wheelhouse, code)
    assert host.run("sync").returncode == 0
    before = host.ready()
    assert before is not None
    (code / "src" / "setup" / "common.py").write_text("# the next release\n")
    manifest = publish_code(s3, wheelhouse, code)
    index = json.loads(body(s3, manifest["code_index"]["key"]))
    entry = next(e for e in index["entries"] if e["path"] == "src/setup/common.py")
    code_key = index["archive"]["key"]
    archive = bytearray(body(s3, code_key))

    # A byte of the changed file's gzip member flipped in the bucket: the member no longer gives the file.
    archive[entry["offset"] + entry["length"] - 9] ^= 1  # inside the member's CRC/size trailer
    s3.put_object(Bucket=BUCKET, Key=code_key, Body=bytes(archive))
    bad = host.run("sync")
    assert bad.returncode != 0
    assert bad.last == ("sync: FAILED code archive member of 'src/setup/common.py' is not what the index says; "
                        "refusing this release")
    assert_workspace_intact(host, before)

    s3.put_object(Bucket=BUCKET, Key=code_key, Body=restore(archive, entry))
    assert host.run("sync").returncode == 0  # the archive as published syncs


def restore(archive: bytearray, entry: dict[str, Any]) -> bytes:
    fixed = bytearray(archive)
    fixed[entry["offset"] + entry["length"] - 9] ^= 1
    return bytes(fixed)


def test_code_index_problems_are_refused(host: Host, s3: Any, published: dict[str, Any]) -> None:
    assert host.run("sync").returncode == 0
    before = host.ready()
    assert before is not None
    ref = published["code_index"]
    index = json.loads(body(s3, ref["key"]))

    # The index object no longer matches the manifest.
    s3.put_object(Bucket=BUCKET, Key=ref["key"], Body=json.dumps(index).encode() + b" ")
    changed = host.run("sync")
    assert changed.returncode != 0
    assert changed.last == (f"sync: FAILED code index {ref['key']} does not match the manifest (size or sha256); "
                            "refusing this release")
    assert_workspace_intact(host, before)

    def republish(doc: dict[str, Any]) -> str:
        put_code_index(s3, published, doc)
        result = host.run("sync")
        assert result.returncode != 0
        assert_workspace_intact(host, before)
        return result.last

    # An entry that climbs out of the workspace, even with a matching hash.
    escape = dict(index, entries=index["entries"] + [{"path": "../escape.txt", "type": "dir", "mode": 0o755}])
    assert republish(escape) == (
        "sync: FAILED code index entry '../escape.txt' has an unsafe path; refusing this release")
    assert not (host.releases / "escape.txt").exists()
    # A link out of the workspace.
    link = dict(index, entries=index["entries"] + [{"path": "etc", "type": "symlink", "mode": 0o777,
                                                   "target": "../../../../../etc"}])
    assert republish(link) == (
        "sync: FAILED code index link 'etc' -> '../../../../../etc' points outside the workspace; refusing")
    # A file's entry pointing at another file's (valid) member: the content's sha256 does not match.
    entries = [dict(e) for e in index["entries"]]
    by_path = {e["path"]: e for e in entries}
    target, other = by_path["src/setup/common.py"], by_path["src/setup/closure_setup.py"]
    target.update(offset=other["offset"], length=other["length"], size=other["size"])
    (host.workdir / "src" / "setup" / "common.py").write_text("# edited on the host: must be fetched\n")
    assert republish(dict(index, entries=entries)) == (
        "sync: FAILED sha256 mismatch for 'src/setup/common.py' in the code archive; refusing this release")
    # An index for another archive.
    other = dict(index, archive=dict(index["archive"], sha256="0" * 64))
    assert republish(other) == "sync: FAILED the code index belongs to another code archive; refusing this release"
    # A member beyond the end of the archive.
    entries = [dict(e) for e in index["entries"]]
    first_file = next(e for e in entries if e["type"] == "file")
    first_file["offset"] = index["archive"]["size"]
    assert republish(dict(index, entries=entries)) == (
        f"sync: FAILED the code index entry {first_file['path']!r} is invalid; refusing this release")


# --------------------------------------------------------------------------- venv installers


def test_uv_builds_the_venv_and_pip_still_can(host: Host, s3: Any, wheelhouse: Path, tmp_path: Path,
                                              published: dict[str, Any]) -> None:
    assert (Path(sys.executable).parent / "uv").exists(), "requirements-dev.txt installs uv beside the interpreter"
    result = host.run("sync")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"building virtualenv \w+ with .* \(uv\)", result.stdout)
    ready = host.ready()
    assert ready is not None
    venv = host.state_dir / "venvs" / ready["venv"]
    marker = json.loads((venv / ".simpletrader-complete").read_text())
    assert marker["installer"] == "uv"
    assert list(venv.rglob("six*.pyc")), "uv compiles the bytecode, as pip does"
    assert (host.state_dir / "uv-cache").is_dir()
    assert host.run_job("src/setup/setup.py").returncode == 0

    # installer pip: python -m venv and pip, as before.
    host.overrides["installer"] = "pip"
    code = tmp_path / "code"
    shutil.copytree(CODE_DIR, code)
    (code / "requirements.txt").write_text((CODE_DIR / "requirements.txt").read_text() + "# pip this time\n")
    publish_code(s3, wheelhouse, code)
    again = host.run("sync")
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r"building virtualenv \w+ with .* \(pip\)", again.stdout)
    ready = host.ready()
    assert ready is not None
    assert json.loads((host.state_dir / "venvs" / ready["venv"] / ".simpletrader-complete").read_text())[
        "installer"] == "pip"


def test_installer_settings_are_checked(host: Host, s3: Any, published: dict[str, Any], tmp_path: Path) -> None:
    host.overrides["installer"] = "conda"
    bad = host.run("sync")
    assert bad.returncode != 0
    assert bad.last == (f"sync: FAILED config {host.config_path}: 'installer' must be auto, uv or pip "
                        "(got 'conda')")
    host.overrides.update(installer="uv", uv=str(tmp_path / "no-such-uv"))
    missing = host.run("sync")
    assert missing.returncode != 0
    assert missing.last == (f"sync: FAILED installer is uv but there is no uv at {tmp_path / 'no-such-uv'}; "
                            "install it in the tool virtualenv (roles/workspace_sync) or set installer to pip")
    assert host.ready() is None and not host.workdir.exists()


# --------------------------------------------------------------------------- the previous workspace is not trusted


def test_links_planted_in_the_workspace_are_never_followed(
        host: Host, s3: Any, wheelhouse: Path, tmp_path: Path) -> None:
    """The trading user owns the workspace and the routine runs as root: a file or directory swapped for a
    symlink (to identical content outside) must not be read through, and nothing outside gets linked in."""
    code = code_copy(tmp_path, "code")
    publish_code(s3, wheelhouse, code)
    assert host.run("sync").returncode == 0
    outside = tmp_path / "outside"
    shutil.copytree(host.workdir / "models", outside / "models")
    shutil.copytree(host.workdir / "src" / "setup", outside / "setup")
    # A file, and a whole directory, replaced by links to identical copies elsewhere.
    weights = host.workdir / "models" / "weights_01.bin"
    weights.unlink()
    weights.symlink_to(outside / "models" / "weights_01.bin")
    shutil.rmtree(host.workdir / "src" / "setup")
    (host.workdir / "src" / "setup").symlink_to(outside / "setup")
    manifest = publish_code(s3, wheelhouse, code)
    result = host.run("sync")
    assert result.returncode == 0, result.stdout + result.stderr
    _, _, fetched, _ = last_built(result.stdout)
    assert fetched == 1 + len(list((outside / "setup").iterdir()))
    new = Path(os.path.realpath(host.workdir))
    assert tree(new) == archive_tree(s3, manifest, tmp_path / "from-archive")
    outside_inodes = {p.stat().st_ino for p in outside.rglob("*") if p.is_file()}
    inside_inodes = {p.lstat().st_ino for p in new.rglob("*") if p.is_file() and not p.is_symlink()}
    assert not outside_inodes & inside_inodes


def test_a_workdir_pointed_elsewhere_is_not_a_source(host: Host, s3: Any, wheelhouse: Path, tmp_path: Path) -> None:
    code = code_copy(tmp_path, "code")
    publish_code(s3, wheelhouse, code)
    assert host.run("sync").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(Path(os.path.realpath(host.workdir)), elsewhere)
    host.workdir.unlink()
    host.workdir.symlink_to(elsewhere)
    publish_code(s3, wheelhouse, code)
    result = host.run("sync")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "extracted" in result.stdout and "built the code base" not in result.stdout


def test_a_file_changed_between_hashing_and_linking_is_fetched(
        host: Host, s3: Any, wheelhouse: Path, tmp_path: Path) -> None:
    """plan_code hashes, build_code links later: a file touched in between is fetched, not linked."""
    code = code_copy(tmp_path, "code")
    manifest = publish_code(s3, wheelhouse, code)
    assert host.run("sync").returncode == 0
    cfg = config.Config.from_dict(host.config(), str(host.config_path))
    entries = json.loads(body(s3, manifest["code_index"]["key"]))["entries"]
    code_obj = next(o for o in manifest["objects"] if o["role"] == "code")
    previous = Path(os.path.realpath(host.workdir))
    plan = codeindex.plan_code(cfg, entries, previous, code_obj["size"], os.getuid())
    assert plan is not None and not plan[2]  # everything could be kept
    touched = previous / "models" / "weights_02.bin"
    touched.write_bytes(touched.read_bytes())  # same bytes, but rewritten after hashing
    dest = tmp_path / "new-release"
    dest.mkdir()
    files, reused, fetched, _ = codebase.build_code(Bucket(s3, BUCKET), code_obj, entries, plan, dest)
    assert (reused, fetched) == (files - 1, 1)
    assert (dest / "models" / "weights_02.bin").stat().st_ino != touched.stat().st_ino
    assert (dest / "models" / "weights_03.bin").stat().st_ino == (previous / "models" / "weights_03.bin").stat().st_ino


def test_a_chain_of_links_out_of_the_tree_is_refused(host: Host, s3: Any, published: dict[str, Any]) -> None:
    """Each link looks inside when it is made; only together do they lead out (x -> b/c/../../y, b -> ., c -> .)."""
    assert host.run("sync").returncode == 0
    before = host.ready()
    assert before is not None
    index = json.loads(body(s3, published["code_index"]["key"]))
    chain = [{"path": "x", "type": "symlink", "mode": 0o777, "target": "b/c/../../y"},
             {"path": "b", "type": "symlink", "mode": 0o777, "target": "."},
             {"path": "c", "type": "symlink", "mode": 0o777, "target": "."}]
    put_code_index(s3, published, dict(index, entries=index["entries"] + chain))
    result = host.run("sync")
    assert result.returncode != 0
    assert result.last == "sync: FAILED code link 'x' -> 'b/c/../../y' leads outside the workspace; refusing"
    assert_workspace_intact(host, before)


def test_a_chain_of_links_in_a_whole_archive_is_refused(host: Host, s3: Any, published: dict[str, Any]) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, target in (("x", "b/c/../../y"), ("b", "."), ("c", ".")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    put_archive_without_index(s3, published, gzip.compress(raw.getvalue()))
    result = host.run("sync")
    assert result.last == "sync: FAILED code link 'x' -> 'b/c/../../y' leads outside the workspace; refusing"
    assert host.ready() is None and not host.workdir.exists()


def test_a_code_index_link_then_an_entry_through_it_creates_nothing_outside(
        host: Host, s3: Any, published: dict[str, Any], tmp_path: Path) -> None:
    """A link entry to a directory outside, then an entry whose path passes through it: the link was made
    before the final check refused the tree, and the clean-up left what was made through it."""
    outside = canary(tmp_path)
    assert host.run("sync").returncode == 0
    index = json.loads(body(s3, published["code_index"]["key"]))
    planted = [{"path": "x", "type": "symlink", "mode": 0o777, "target": str(outside)},
               {"path": "x/evil.service", "type": "symlink", "mode": 0o777, "target": "/dev/null"}]
    put_code_index(s3, published, dict(index, entries=index["entries"] + planted))
    before = snapshot(outside)
    result = host.run("sync")
    assert snapshot(outside) == before
    assert result.returncode != 0
    assert result.last == ("sync: FAILED code index entry 'x/evil.service' passes through the link 'x'; "
                           "refusing this release")


def test_a_whole_archive_cannot_reach_outside_through_a_chain_of_links(
        host: Host, s3: Any, published: dict[str, Any], tmp_path: Path) -> None:
    """Each link looks inside when it is made; a directory member at a link's path then changed what the
    chain leads to (three levels up from the release, the canary), before the final check refused the tree."""
    outside = canary(tmp_path)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, target in (("a", "b/c/d/../../../canary"), ("b", "."), ("c", "."), ("d", ".")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        info = tarfile.TarInfo("a")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    put_archive_without_index(s3, published, gzip.compress(raw.getvalue()))
    before = snapshot(outside)
    result = host.run("sync")
    assert snapshot(outside) == before
    assert result.returncode != 0
    assert result.last == "sync: FAILED code archive member 'a' passes through or replaces the link 'a'; refusing"


def test_modes_other_than_0644_and_0755_are_refused(host: Host, s3: Any, published: dict[str, Any]) -> None:
    assert host.run("sync").returncode == 0
    index = json.loads(body(s3, published["code_index"]["key"]))
    entries = [dict(e) for e in index["entries"]]
    setuid = next(e for e in entries if e["type"] == "file")
    setuid["mode"] = 0o4755
    put_code_index(s3, published, dict(index, entries=entries))
    result = host.run("sync")
    assert result.last == f"sync: FAILED the code index entry {setuid['path']!r} is invalid; refusing this release"


def test_a_linked_ledger_is_not_carried_over(host: Host, s3: Any, published: dict[str, Any], wheelhouse: Path,
                                             tmp_path: Path) -> None:
    assert host.run("sync").returncode == 0
    outside = tmp_path / "not-the-ledger"
    outside.mkdir()
    (outside / "private.txt").write_text("not trade data\n")
    ledger = host.workdir / "ledger"
    if ledger.exists():
        shutil.rmtree(ledger)
    ledger.symlink_to(outside)
    published_again = do_publish(s3, wheelhouse)
    result = host.run("sync")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.result is not None and result.result["release"] == published_again["release"]
    assert not (host.workdir / "ledger" / "private.txt").exists()
    # Inside the ledger, a link to a file elsewhere is skipped and said so; plain files carry over.
    (host.workdir / "ledger").mkdir(exist_ok=True)
    (host.workdir / "ledger" / "ledger.csv").write_text("date,symbol\n")
    (host.workdir / "ledger" / "peek.txt").symlink_to(outside / "private.txt")
    again = host.run("sync")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "not carrying over ledger/peek.txt: it is a symbolic link" in again.stdout
    assert (host.workdir / "ledger" / "ledger.csv").read_text() == "date,symbol\n"
    assert not (host.workdir / "ledger" / "peek.txt").exists()


def test_write_atomic_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    marker = tmp_path / "marker.json"
    (tmp_path / f".marker.json.tmp-{os.getpid()}").symlink_to(victim)
    fsutil.write_atomic(marker, b"{}\n", 0o644)
    assert victim.read_text() == "precious\n"
    assert marker.read_bytes() == b"{}\n" and not marker.is_symlink()


def test_eod_uploads_only_from_a_release_of_this_host(host: Host, s3: Any, published: dict[str, Any],
                                                     tmp_path: Path) -> None:
    assert host.run("sync").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "trade_logs" / "2026-01-01").mkdir(parents=True)
    (elsewhere / "trade_logs" / "2026-01-01" / "not-mine.csv").write_text("x\n")
    host.workdir.unlink()
    host.workdir.symlink_to(elsewhere)
    result = host.run("eod")
    assert result.returncode != 0
    assert result.last == (f"eod: FAILED workdir {host.workdir} points at {elsewhere}, not at a release in "
                           f"{host.releases}; nothing uploaded. Run sync to restore it (trade data of every "
                           "release is uploaded first)")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="logs/").get("Contents", [])
    assert not [o for o in listed if "not-mine" in o["Key"]]
    assert host.run("sync").returncode == 0
    assert Path(os.path.realpath(host.workdir)).parent == host.releases


def test_uv_cache_is_cleared_with_the_virtualenvs_it_served(host: Host, s3: Any, wheelhouse: Path,
                                                            tmp_path: Path, published: dict[str, Any]) -> None:
    assert host.run("sync").returncode == 0
    code = tmp_path / "code"
    shutil.copytree(CODE_DIR, code)
    for n in (1, 2):  # two requirements changes: the first venv's release is pruned on the second
        (code / "requirements.txt").write_text((CODE_DIR / "requirements.txt").read_text() + f"# change {n}\n")
        publish_code(s3, wheelhouse, code)
        result = host.run("sync")
        assert result.returncode == 0, result.stdout + result.stderr
    assert "pruning unused virtualenv" in result.stdout
    assert "clearing uv's cache (the wheels of pruned virtualenvs)" in result.stdout
    assert not (host.state_dir / "uv-cache").exists()
    # The current venv's files were linked from that cache: they are still whole.
    assert host.run_job("src/setup/setup.py").returncode == 0
    ready = host.ready()
    assert ready is not None
    six = subprocess.run([ready["python"], "-c", "import six; print(six.__version__)"], capture_output=True,
                         text=True, check=True)
    assert six.stdout.strip() == "1.16.0"


def test_thousands_of_directories_stay_within_a_small_descriptor_limit(tmp_path: Path) -> None:
    """The SSM agent's children may open 1,024 files: reading a tree of more directories must not run out."""
    src = tmp_path / "src"
    for i in range(300):
        d = src / "ledger" / f"d{i:03d}"
        d.mkdir(parents=True)
        (d / "entry.csv").write_text(f"{i}\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    script = (
        "import os, resource\n"
        "from pathlib import Path\n"
        "from simpletrader_workspace.fsutil import Beneath\n"
        "from simpletrader_workspace.ledger import copy_plain_files\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        f"copy_plain_files(Path({str(src)!r}), 'ledger', Path({str(dest)!r}))\n"
        f"b = Beneath(Path({str(src)!r}))\n"
        "for i in range(300):\n"
        "    os.close(b.open_file(f'ledger/d{i:03d}/entry.csv'))\n"
        "assert len(b.dirs) <= b.MAX_OPEN + 1, len(b.dirs)\n"
        "b.close()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=routine_env())
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.read_text() for p in (dest / "ledger").rglob("entry.csv")) == sorted(f"{i}\n" for i in range(300))


def test_markers_are_read_without_following_links_or_waiting_on_a_fifo(tmp_path: Path) -> None:
    secret = tmp_path / "root-only.json"
    secret.write_text('{"files": {"x": 1}}')
    linked = tmp_path / "linked.json"
    linked.symlink_to(secret)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert fsutil.read_json(linked) is None
    assert fsutil.read_json(fifo) is None  # returns at once; a blocking open would hang here
    assert fsutil.read_json(secret) == {"files": {"x": 1}}
