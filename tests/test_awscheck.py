"""`make aws-check`'s real-account path (devtools/awscheck.py) without an account: what it asks AWS, and where.

Every AWS call is answered here (botocore's ``_make_api_call`` replaced), so
the tests see each call's operation, parameters and the region of the client
that made it. tests/e2e/test_awscheck_local.py runs the whole check against
the local world.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest
from botocore.response import StreamingBody

from devtools.awscheck import AwsWorld

REGION = "ap-south-1"  # stack.region of the throwaway stack


@dataclass
class Api:
    """The AWS calls made, and the answers given, by operation name."""

    calls: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)  # service, region, op, params
    configs: list[Any] = field(default_factory=list)  # each call's client config
    answers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)

    def regions(self, operation: str) -> list[str]:
        return [region for _, region, op, _ in self.calls if op == operation]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Api:
    recorded = Api()

    def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        recorded.calls.append((client.meta.service_model.service_name, client.meta.region_name, operation, params))
        recorded.configs.append(client.meta.config)
        return recorded.answers[operation](params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)
    return recorded


@pytest.fixture(params=["eu-west-1", None], ids=["profile-in-another-region", "profile-without-region"])
def profile(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """An operator's AWS profile whose region is not the stack's, or that has none."""
    region = request.param
    config = tmp_path / "aws-config"
    config.write_text("[profile trading]\n" + (f"region = {region}\n" if region else ""))
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "trading")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # no session left over from another test
    return str(region)


def payload(body: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps(body).encode()
    return {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(data), len(data))}


def test_invoke_calls_the_function_in_the_stacks_region(api: Api, profile: str | None, tmp_path: Path) -> None:
    api.answers["Invoke"] = lambda params: payload({"outcome": "synced", "date": "2026-03-02"})
    world = AwsWorld(tmp_path, "-check-0a1b2c", REGION)
    result = world.invoke("stcheck-0a1b2c-start", {"force": True}, tmp_path / "lambda.log")
    assert result == {"outcome": "synced", "date": "2026-03-02"}
    assert api.regions("Invoke") == [REGION]
    [(_, _, _, params)] = api.calls
    assert params["FunctionName"] == "stcheck-0a1b2c-start" and json.loads(params["Payload"]) == {"force": True}
    # It waits for the function's whole run (up to its 900 s timeout) and is not retried.
    [config] = api.configs
    assert config.read_timeout == 960 and config.retries["total_max_attempts"] == 1


def test_every_client_of_the_real_account_path_is_in_the_stacks_region(profile: str | None, tmp_path: Path) -> None:
    world = AwsWorld(tmp_path, "-check-0a1b2c", REGION)
    for service in ("s3", "ec2", "logs", "lambda"):
        assert world.client(service).meta.region_name == REGION, service
