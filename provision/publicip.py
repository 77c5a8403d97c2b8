"""The operator's current public IPv4 address, for ``network.ssh_ingress: auto``.

Looked up at ``plan``/``up`` time from AWS's own echo service (the address a
request to AWS comes from, which is what a security group sees).
``ST_CHECKIP_URL`` names another service that answers with the bare address
(behind a proxy, or in tests).
"""

from __future__ import annotations

import ipaddress
import os
import urllib.error
import urllib.request

from provision.errors import ProvisionError

CHECKIP_URL = "https://checkip.amazonaws.com/"
URL_ENV = "ST_CHECKIP_URL"
TIMEOUT_SECONDS = 10.0


def lookup(url: str | None = None, timeout: float = TIMEOUT_SECONDS) -> str:
    """The caller's public IPv4 address as a /32 CIDR; ProvisionError when it cannot be found."""
    url = url or os.environ.get(URL_ENV) or CHECKIP_URL
    fix = "list your address as a /32 in network.ssh_ingress instead of auto"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - a fixed or operator-set URL
            text = resp.read(64).decode("ascii", "replace").strip()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ProvisionError(f"network.ssh_ingress: auto: could not look up your public IPv4 address at "
                             f"{url} ({reason}); {fix}") from None
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise ProvisionError(f"network.ssh_ingress: auto: {url} answered {text[:40]!r}, not an IPv4 "
                             f"address; {fix}") from None
    if not address.is_global:
        raise ProvisionError(f"network.ssh_ingress: auto: {url} answered {address}, which is not a public "
                             f"address; {fix}")
    return f"{address}/32"
