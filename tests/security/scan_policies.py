"""Run parliament and cloudsplaining on policy documents; print their findings as JSON.

Runs under the policy scanners' own virtualenv (``.venv-scan/policy``, from
requirements-scan-policy.txt), never the project's: ``test_security_scan.py``
calls it as a subprocess::

    .venv-scan/policy/bin/python tests/security/scan_policies.py DIR

``DIR`` holds one ``<kind>--<name>.json`` per policy, kind being ``identity``
(an inline role policy: parliament and cloudsplaining), ``trust`` or
``resource`` (parliament). parliament reads every statement as needing a
``Resource``, which a role's trust policy has not: the caller gives each trust
statement the role's own ARN (what sts:AssumeRole acts on) as its Resource.
Output: a JSON list of ``{"tool", "policy", "issue", "severity", "detail"}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cloudsplaining.scan.policy_document import PolicyDocument
from parliament import analyze_policy_string, enhance_finding

# cloudsplaining's risk categories: each lists the actions allowed without a resource constraint.
CLOUDSPLAINING = {
    "PrivilegeEscalation": "allows_privilege_escalation",
    "DataExfiltration": "allows_data_exfiltration_actions",
    "ResourceExposure": "permissions_management_without_constraints",
    "CredentialsExposure": "credentials_exposure",
    "InfrastructureModification": "infrastructure_modification",
    "ServiceWildcard": "service_wildcard",
}


def scan(path: Path) -> list[dict[str, Any]]:
    kind, _, name = path.stem.partition("--")
    text = path.read_text()
    found = []
    for f in analyze_policy_string(text, str(path), include_community_auditors=True).findings:
        try:
            f = enhance_finding(f)  # severity and title from parliament's own table
        except Exception:  # noqa: BLE001 - a community auditor's issue is not in that table
            f.severity = "(community auditor)"
        found.append({"tool": "parliament", "policy": name, "issue": f.issue, "severity": f.severity,
                      "detail": json.loads(json.dumps(f.detail, default=str))})
    if kind == "identity":
        doc = PolicyDocument(json.loads(text))
        for issue, attribute in CLOUDSPLAINING.items():
            actions = getattr(doc, attribute)
            if actions:
                found.append({"tool": "cloudsplaining", "policy": name, "issue": issue, "severity": "",
                              "detail": sorted(json.loads(json.dumps(actions, default=str)), key=str)})
    return found


def main(directory: str) -> int:
    findings = [f for p in sorted(Path(directory).glob("*.json")) for f in scan(p)]
    print(json.dumps(findings, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
