"""What the routine tells its caller: a line per step, and the last line.

Every line is ``<command>: <text>``, flushed at once (SSM and the benchmarks
read them as they come). The last line says how the command ended; the
Lambdas quote it.
"""

from __future__ import annotations


def say(cmd: str, message: str) -> None:
    print(f"{cmd}: {message}", flush=True)
