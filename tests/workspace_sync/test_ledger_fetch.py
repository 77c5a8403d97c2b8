"""A new host's ledger comes from the bucket whole, or the sync fails (docs/CONTRACTS.md, the ledger carries over).

Had the sync gone on without it, the trading jobs would append to a missing
or cut ledger, and the end of day would upload that over the bucket's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, ResponseStreamingError
from example_release import BUCKET, body
from simpletrader_workspace import config, sync
from simpletrader_workspace import s3 as routine_s3
from simpletrader_workspace.errors import Failure
from wshelpers import Host

LEDGER = b"date,symbol,side,quantity,price\n" + b"".join(
    b"2026-10-%02d,NSE:INFY,BUY,1,1500.0\n" % d for d in range(1, 29))


class Body:
    """A response body that gives ``data`` and then, when ``breaks``, the error of a dropped connection."""

    def __init__(self, data: bytes, breaks: bool) -> None:
        self.data, self.breaks = data, breaks

    def read(self, _size: int = -1) -> bytes:
        if self.data:
            data, self.data = self.data, b""
            return data
        if self.breaks:
            raise ResponseStreamingError(error="Connection broken: IncompleteRead")
        return b""


class LedgerFails:
    """An S3 client that cannot list the ledger prefix, or gives only the first 200 bytes of its objects."""

    def __init__(self, real: Any, how: str) -> None:
        self.real, self.how = real, how

    def get_paginator(self, name: str) -> Any:
        real, how = self.real.get_paginator(name), self.how

        class Paginator:
            def paginate(self, **kwargs: Any) -> Any:
                if how == "listing" and str(kwargs.get("Prefix", "")).startswith("ledger/"):
                    raise EndpointConnectionError(endpoint_url="https://s3.ap-south-1.amazonaws.com/")
                return real.paginate(**kwargs)

        return Paginator()

    def get_object(self, **kwargs: Any) -> Any:
        response = self.real.get_object(**kwargs)
        if self.how != "listing" and str(kwargs["Key"]).startswith("ledger/"):
            response["Body"] = Body(response["Body"].read()[:200], breaks=self.how == "dropped")
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.parametrize("how", ["listing", "dropped", "short"])
def test_a_new_host_that_cannot_fetch_the_whole_ledger_is_not_made_ready(
        host: Host, s3: Any, published: dict[str, Any], monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    s3.put_object(Bucket=BUCKET, Key="ledger/ledger.csv", Body=LEDGER)
    host.write_config()
    cfg = config.load_config(str(host.config_path))
    monkeypatch.setattr(routine_s3, "client", lambda c: LedgerFails(
        boto3.client("s3", region_name=c.region, endpoint_url=c.endpoint_url), how))
    with pytest.raises(Failure) as info:
        sync.run(cfg)
    assert "could not fetch the ledger from the bucket's ledger/" in str(info.value)
    assert host.ready() is None  # the jobs do not start
    assert not os.path.lexists(host.workdir)
    assert [p.name for p in host.release_dirs()] == []  # the half-made release is gone

    # Once the bucket can be read (a real client, in a new process), the next sync brings the whole ledger,
    # and the end of day uploads it unchanged.
    again = host.run("sync")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (Path(host.workdir) / "ledger" / "ledger.csv").read_bytes() == LEDGER
    host.overrides["closure_script"] = ""
    assert host.run("eod").returncode == 0
    assert body(s3, "ledger/ledger.csv") == LEDGER


class SecondUploadFails:
    """An S3 client whose second upload fails (the first goes through)."""

    def __init__(self, real: Any) -> None:
        self.real, self.uploads = real, 0

    def put_object(self, **kwargs: Any) -> Any:
        self.uploads += 1
        if self.uploads == 2:
            raise EndpointConnectionError(endpoint_url="https://s3.ap-south-1.amazonaws.com/")
        return self.real.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_an_older_ledger_uploaded_in_part_is_followed_by_the_newest_one(
        host: Host, s3: Any, published: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The rescue of an older release uploads its ledger file, then fails on the next file: the bucket must
    not be left with the older ledger."""
    host.overrides["closure_script"] = ""
    assert host.run("sync").returncode == 0
    older = Path(os.path.realpath(host.workdir))
    assert host.run("sync").returncode == 0
    newest = Path(os.path.realpath(host.workdir))
    (newest / "ledger").mkdir(exist_ok=True)
    (newest / "ledger" / "ledger.csv").write_bytes(LEDGER + b"newest,row\n")
    assert host.run("eod").returncode == 0  # the newest ledger is in the bucket, the release confirmed
    (older / "ledger").mkdir(exist_ok=True)
    (older / "ledger" / "ledger.csv").write_bytes(LEDGER)  # an older ledger, unconfirmed: uploaded first
    (older / "ledger" / "more.csv").write_text("older, not uploaded\n")  # uploaded second: fails
    host.write_config()
    cfg = config.load_config(str(host.config_path))
    monkeypatch.setattr(routine_s3, "client", lambda c: SecondUploadFails(
        boto3.client("s3", region_name=c.region, endpoint_url=c.endpoint_url)))
    from simpletrader_workspace.release import rescue

    failed = rescue(cfg, routine_s3.Bucket(routine_s3.client(cfg), cfg.bucket))
    assert failed == [older]
    assert body(s3, "ledger/ledger.csv") == LEDGER + b"newest,row\n"
