"""Playing the SSM agent for the local days: the stack's own documents, run on the test host as root."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import boto3

from devtools.testhost import DayFailed, Host


class SsmAgent:
    """Stands in for the SSM agent on one instance, mapped to a test host.

    Registered on the default boto3 session (the one the handlers' clients
    come from): when a handler asks GetCommandInvocation for a command, the
    command is read back from the emulator with a separate client. Only the
    stack's own documents (``documents``) are run, anything else (such as
    AWS-RunShellScript) is refused as an error of the day; the document's
    content is read from the emulator too, and its aws:runShellScript steps
    run on the host as root over SSH with their parameters filled in, as the
    agent does. The real exit code and output are returned as the invocation.
    """

    def __init__(self, host: Host, instance_id: str, log: Path, documents: set[str]) -> None:
        self.host = host
        self.instance_id = instance_id
        self.log = log
        self.documents = documents
        self.reader = boto3.client("ssm")  # created before the hook: not intercepted
        self.results: dict[str, dict[str, Any]] = {}
        self.ran: list[str] = []
        self.sent: list[str] = []  # the documents run, in order

    def install(self) -> None:
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        events = boto3.DEFAULT_SESSION.events
        events.register("before-parameter-build.ssm.GetCommandInvocation", self._remember)
        events.register("before-call.ssm.GetCommandInvocation", self._invocation)

    def uninstall(self) -> None:
        if boto3.DEFAULT_SESSION is not None:
            events = boto3.DEFAULT_SESSION.events
            events.unregister("before-parameter-build.ssm.GetCommandInvocation", self._remember)
            events.unregister("before-call.ssm.GetCommandInvocation", self._invocation)

    @staticmethod
    def _remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["st_agent_params"] = dict(params)

    def _invocation(self, context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        params = context.get("st_agent_params") or {}
        command_id = params.get("CommandId")
        if not command_id or params.get("InstanceId") != self.instance_id:
            return None
        if command_id not in self.results:
            command = self.reader.list_commands(CommandId=command_id)["Commands"][0]
            document = command["DocumentName"]
            script, timeout = self._script(document, command.get("Parameters") or {})
            self.sent.append(document)
            self.ran.append(script)
            try:
                proc = self.host.sh(f"sudo -n -i bash -c {shlex.quote(script)}", check=False, log=self.log,
                                    timeout=timeout)
                code, out, err = proc.returncode, proc.stdout, proc.stderr
                status = "Success" if code == 0 else "Failed"
            except subprocess.TimeoutExpired:  # the agent ends a command past its executionTimeout
                code, out, err, status = -1, "", f"timed out after {timeout:.0f}s", "TimedOut"
            self.results[command_id] = {
                "CommandId": command_id, "InstanceId": self.instance_id,
                "DocumentName": document, "PluginName": "aws:runShellScript",
                "ResponseCode": code, "Status": status, "StatusDetails": status,
                "StandardOutputContent": out[-24000:], "StandardErrorContent": err[-8000:],
            }
        http = type("Http", (), {"status_code": 200, "headers": {}})()
        return http, dict(self.results[command_id], ResponseMetadata={"HTTPStatusCode": 200})

    def _script(self, document: str, parameters: dict[str, list[str]]) -> tuple[str, float]:
        """The shell script a document's steps amount to, and its deadline in seconds."""
        if document not in self.documents:
            raise DayFailed(f"refused SSM document {document}: the functions may send only {sorted(self.documents)}")
        content = json.loads(self.reader.get_document(Name=document)["Content"])
        values = {name: spec.get("default", "") for name, spec in content.get("parameters", {}).items()}
        unknown = set(parameters) - set(values)
        if unknown:
            raise DayFailed(f"document {document} has no parameter(s) {sorted(unknown)}")
        values.update({name: given[0] for name, given in parameters.items()})
        lines, timeout = [], 0.0
        for step in content["mainSteps"]:
            if step["action"] != "aws:runShellScript":
                raise DayFailed(f"document {document}: step action {step['action']} is not played here")
            lines += step["inputs"]["runCommand"]
            seconds = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: values[m.group(1)],
                             str(step["inputs"].get("timeoutSeconds", "3600")))
            timeout += float(seconds)
        return "\n".join(lines), timeout
