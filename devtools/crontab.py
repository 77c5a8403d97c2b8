"""How the local days read a crontab and run its entries as cron would."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from devtools.testhost import DayFailed, Host


def crontab_entries(text: str) -> dict[str, tuple[list[str], str]]:
    """Named entries of ``crontab -l``: name -> (the five time fields, the command as cron runs it)."""
    entries: dict[str, tuple[list[str], str]] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("#Ansible: "):
            name = line[len("#Ansible: "):].strip()
            continue
        if name and line.strip() and not line.startswith("#") and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line):
            fields = line.split(None, 5)
            entries[name] = (fields[:5], fields[5].replace("\\%", "%"))  # cron turns \% into %
            name = None
    return entries


def parse_crontab(text: str) -> dict[str, str]:
    """Cron jobs by name from ``crontab -l``: the exact command cron would run (``__env__``: its
    environment lines)."""
    jobs = {name: command for name, (_, command) in crontab_entries(text).items()}
    jobs["__env__"] = "\n".join(ln for ln in text.splitlines() if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", ln))
    return jobs


def crontab_jobs(host: Host) -> dict[str, str]:
    """ec2-user's cron jobs by name: the exact line cron would run (environment lines included)."""
    return parse_crontab(host.sh("crontab -l").stdout)


def cron_command(jobs: dict[str, str], name: str, user: str = "ec2-user") -> str:
    """A shell command that runs job ``name`` as cron does: /bin/sh, cron's minimal environment plus the
    crontab's own lines. Run it as ``user``."""
    name = next((k for k in jobs if k == name or k.endswith(f"-{name}")), name)  # roles prefix the stack
    if name not in jobs:
        raise DayFailed(f"no cron job named {name!r} in {user}'s crontab (have: {sorted(jobs)})")
    exports = "".join(f"export {ln.split('=', 1)[0]}={shlex.quote(ln.split('=', 1)[1])}; "
                      for ln in jobs["__env__"].splitlines())
    script = f"{exports}{jobs[name]}"
    return (f"env -i HOME=/home/{user} LOGNAME={user} USER={user} SHELL=/bin/sh PATH=/usr/bin:/bin "
            f"/bin/sh -c {shlex.quote(script)}")


def as_user(command: str, user: str, login: str) -> str:
    """A shell command for the login user's shell that runs ``command`` as ``user`` (sudo when it is another;
    from ``/``, since the login user's home may be closed to it)."""
    return command if user == login else f"cd / && sudo -n -u {shlex.quote(user)} {command}"


def run_cron_job(host: Host, jobs: dict[str, str], name: str, log: Path) -> subprocess.CompletedProcess[str]:
    """Run a job as cron does, as ec2-user."""
    return host.sh(cron_command(jobs, name), check=False, log=log)
