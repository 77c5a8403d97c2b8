"""Nothing is lost: an old release's trade data is uploaded before the release is pruned, or kept."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from example_release import body
from simpletrader_workspace import config, sync
from simpletrader_workspace import s3 as routine_s3
from wshelpers import (
    Host,
    exchange_today,
)

# --------------------------------------------------------------------------- nothing is lost


def test_unuploaded_data_is_uploaded_before_pruning(host: Host, s3: Any, published: dict[str, Any]) -> None:
    yesterday, before = exchange_today(-1), exchange_today(-2)
    # A host set up by the original CDK app: the workdir is a plain directory with trade data.
    legacy = host.workdir
    (legacy / "trade_logs" / before).mkdir(parents=True)
    (legacy / "trade_logs" / before / "trades.csv").write_text("legacy trades\n")
    (legacy / "ledger").mkdir()
    (legacy / "ledger" / "ledger.csv").write_text("date,symbol\nlegacy,row\n")
    host.overrides["keep_releases"] = 1

    first = host.run("sync")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "moving the existing workdir" in first.stdout
    assert body(s3, f"logs/{before}/trades.csv") == b"legacy trades\n"
    # keep_releases=1, and its data is confirmed uploaded, so the legacy copy went.
    assert "pruning release legacy-" in first.stdout
    assert [p.name for p in host.release_dirs()] == [Path(os.path.realpath(host.workdir)).name]
    assert (host.workdir / "ledger" / "ledger.csv").read_text() == "date,symbol\nlegacy,row\n"

    # Yesterday's trading, but the end-of-day routine never ran (instance stopped early).
    day = host.workdir / "trade_logs" / yesterday
    day.mkdir(parents=True)
    (day / "trades.csv").write_text("yesterday's trades\n")
    with open(host.workdir / "ledger" / "ledger.csv", "a") as fh:
        fh.write("yesterday,row\n")
    old_release = Path(os.path.realpath(host.workdir))

    second = host.run("sync")
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"unconfirmed trade data file(s) of release {old_release.name}" in second.stdout
    assert body(s3, f"logs/{yesterday}/trades.csv") == b"yesterday's trades\n"
    assert body(s3, "ledger/ledger.csv") == b"date,symbol\nlegacy,row\nyesterday,row\n"
    assert not old_release.exists()
    assert (host.workdir / "ledger" / "ledger.csv").read_text().endswith("yesterday,row\n")


class UploadsFail:
    """An S3 client whose uploads fail (downloads still work)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def put_object(self, **_kwargs: Any) -> None:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_data_that_cannot_be_uploaded_is_kept(
    host: Host,
    s3: Any,
    published: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host.overrides["keep_releases"] = 1
    assert host.run("sync").returncode == 0
    old_release = Path(os.path.realpath(host.workdir))
    day = old_release / "trade_logs" / exchange_today(-1)
    day.mkdir(parents=True)
    (day / "trades.csv").write_text("precious\n")

    cfg = config.load_config(str(host.config_path))
    monkeypatch.setattr(routine_s3, "client",
                        lambda c: UploadsFail(boto3.client("s3", region_name=c.region, endpoint_url=c.endpoint_url)))
    outcome = sync.run(cfg)
    out = capsys.readouterr().out
    assert outcome.details["release"] == published["release"]
    assert "could not upload the trade data of " + old_release.name in out
    assert f"keeping {old_release.name}: its trade data is not confirmed uploaded" in out
    assert (day / "trades.csv").read_text() == "precious\n"
    assert Path(os.path.realpath(host.workdir)) != old_release

    # Once uploads work again (a real client, in a new process), the next sync uploads it, then prunes it.
    again = host.run("sync")
    assert again.returncode == 0, again.stdout + again.stderr
    assert body(s3, f"logs/{exchange_today(-1)}/trades.csv") == b"precious\n"
    assert not old_release.exists()
