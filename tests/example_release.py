"""The example release, published into the test bucket: shared by the publish tests
(tests/provision/test_prov_publish.py) and the routine's tests (tests/workspace_sync), which
sync what publish wrote. Fixtures (``wheelhouse``, ``s3``) are in tests/conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from provision.publish import publish

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example"
CODE_DIR = EXAMPLE / "simpletrader"
KEYS_FILE = EXAMPLE / "secrets" / "keys.json"
TOKEN_FILE = EXAMPLE / "secrets" / "access_token.txt"
BUCKET = "simpletrader-working-bucket-test"
PREFIXES = {"deploy": "deploy/", "secrets": "secrets/", "logs": "logs/", "ledger": "ledger/"}
# Every value in the example secrets: none may ever appear in the routine's output.
SECRET_VALUES = [str(v) for v in json.loads(KEYS_FILE.read_text()).values()]
SECRET_VALUES.append(TOKEN_FILE.read_text().strip())


def do_publish(s3: Any, wheelhouse: Path | None, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        bucket=BUCKET,
        prefixes=PREFIXES,
        code_dir=CODE_DIR,
        requirements=CODE_DIR / "requirements.txt",
        keys_file=KEYS_FILE,
        token_file=TOKEN_FILE,
        wheelhouse=wheelhouse,
        log=lambda _m: None,
    )
    kwargs.update(overrides)
    return publish(s3, **kwargs)


def body(s3: Any, key: str) -> bytes:
    """An object of the example's bucket."""
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
