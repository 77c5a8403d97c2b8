"""The one client factory, and small helpers every resource module uses.

Clients come from :class:`Clients`: one boto3 session per run, every client
made with ``Config(retries={"mode": "standard", "max_attempts": N})``. boto3
takes the endpoint from ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``)
natively, so the same code runs against AWS and against a local emulator with
no code path special to either.

Tests (and a debugging operator) can observe or inject behaviour by
registering botocore event handlers on :attr:`Clients.events` before the
first client is made, e.g. ``clients.events.register("before-call", hook)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

#: botocore's ``retries["max_attempts"]``: retries after the first attempt (so 8 means up to 9 calls).
DEFAULT_MAX_ATTEMPTS = 8


class Clients:
    """Lazily made, cached boto3 clients for one region, all with standard retries."""

    def __init__(
        self,
        region: str,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        session: boto3.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.region = region
        self.max_attempts = max_attempts
        self.session = session or boto3.Session(region_name=region)
        self.config = Config(region_name=region, retries={"mode": "standard", "max_attempts": max_attempts})
        # The bounded waits AWS offers no waiter for (IAM propagation, an agent not yet reachable by
        # Session Manager, the SSM polls of publish --sync); tests pass one that returns at once.
        self.sleep = sleep
        self._clients: dict[str, Any] = {}
        self._identity: dict[str, str] | None = None

    @property
    def events(self) -> Any:
        """The session's botocore event emitter; clients made afterwards see its handlers."""
        return self.session.events

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, config=self.config)  # type: ignore[call-overload]
        return self._clients[service]

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def iam(self) -> Any:
        return self.client("iam")

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def ssm(self) -> Any:
        return self.client("ssm")

    @property
    def sns(self) -> Any:
        return self.client("sns")

    @property
    def lambda_(self) -> Any:
        return self.client("lambda")

    @property
    def events_client(self) -> Any:
        return self.client("events")

    def _caller(self) -> dict[str, str]:
        if self._identity is None:
            found = self.client("sts").get_caller_identity()
            self._identity = {"Account": str(found["Account"]), "Arn": str(found["Arn"])}
        return self._identity

    @property
    def account_id(self) -> str:
        return self._caller()["Account"]

    @property
    def caller_arn(self) -> str:
        """The ARN of whoever runs this command (a role session's ARN for an assumed role)."""
        return self._caller()["Arn"]

    @property
    def partition(self) -> str:
        return str(self.session.get_partition_for_region(self.region))


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def unless_missing(call: Callable[[], Any], missing_code: str, default: Any) -> Any:
    """``call()``, or ``default`` when AWS answers that the thing is not there (``missing_code``)."""
    try:
        return call()
    except ClientError as exc:
        if error_code(exc) == missing_code:
            return default
        raise


def error_message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", ""))
    return str(exc)


def paginate(client: Any, operation: str, result_key: str, **kwargs: Any) -> Iterator[Any]:
    """Every item of ``result_key`` across pages (one plain call if AWS offers no paginator)."""
    if client.can_paginate(operation):
        for page in client.get_paginator(operation).paginate(**kwargs):
            yield from page.get(result_key, [])
    else:
        yield from getattr(client, operation)(**kwargs).get(result_key, [])


def retry_on(
    codes_and_text: list[tuple[str, str]],
    call: Callable[[], Any],
    *,
    attempts: int,
    delay: float,
    sleep: Callable[[float], None],
) -> Any:
    """Retry ``call`` only on the listed (error code, message fragment) pairs, with a bounded backoff.

    For eventual consistency AWS offers no waiter for, such as a new IAM role
    not yet assumable by Lambda or a new instance profile not yet visible to
    EC2. Any other error is raised at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ClientError as exc:
            code, message = error_code(exc), error_message(exc)
            known = any(code == c and t in message for c, t in codes_and_text)
            if not known or attempt == attempts:
                raise
            sleep(min(delay * attempt, 10.0))
    raise AssertionError("unreachable")


def describe_client_error(exc: ClientError) -> str:
    """One or two lines for an AWS error that ended a command: what failed, and what to do."""
    code, message = error_code(exc), error_message(exc)
    op = exc.operation_name
    attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    tried = f" (gave up after {attempts + 1} attempts)" if attempts else ""
    if code in (
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "RequestThrottled",
        "ThrottledException",
    ):
        return (
            f"AWS is throttling {op} ({code}){tried}. Nothing is lost: wait a minute and re-run the same "
            "command; it continues where it stopped"
        )
    if code in (
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
    ):
        return f"{op}: {code}: {message}. Check the AWS credentials and their permissions, then re-run"
    return f"{op} failed: {code}: {message}{tried}. Fix the cause and re-run the same command"
