# ruff: noqa: S311 - deterministic test data, not security: seeded generators are the point
"""A realistic, deterministic trading code base and its requirements, generated into a temp dir.

About 1,500 files and a ~20 MB ``code.tar.gz``: ~1,300 Python modules
(strategies, indicators, broker adapters, tests) and ~100 binary data files
(model weights, cached instrument tables) that do not compress, which is what
makes a real trading repository's archive large. Same ``seed`` and
``variant``: same bytes. A new ``variant`` changes a few modules only (a new
code release, as on a normal trading morning).

The requirements are 15 pinned packages with numpy and pandas, all with
CPython 3.9 manylinux wheels.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS = (
    "numpy==2.0.2",
    "pandas==2.2.3",
    "python-dateutil==2.9.0.post0",
    "pytz==2024.2",
    "tzdata==2024.2",
    "six==1.16.0",
    "requests==2.32.3",
    "urllib3==2.2.3",
    "idna==3.10",
    "charset-normalizer==3.4.0",
    "certifi==2024.8.30",
    "PyYAML==6.0.2",
    "tabulate==0.9.0",
    "python-dotenv==1.0.1",
    "simplejson==3.19.3",
)

PACKAGES = ("strategies", "indicators", "brokers", "risk", "data", "backtest", "utils", "reports", "tests")
WORDS = ("price", "volume", "signal", "order", "position", "ledger", "tick", "candle", "spread", "margin",
         "instrument", "quote", "depth", "trigger", "stop", "target", "window", "ema", "rsi", "vwap")


@dataclass(frozen=True)
class Shape:
    """How big the generated code base is."""

    modules: int = 1300
    data_files: int = 100
    data_bytes: int = 200 * 1024  # per data file, incompressible
    changed_per_variant: int = 25


def _module(rng: random.Random, name: str, salt: str) -> str:
    lines = [f'"""{name}: generated trading module ({salt})."""', "", "from __future__ import annotations", "",
             "import math", ""]
    for i in range(rng.randint(6, 14)):
        a, b = rng.choice(WORDS), rng.choice(WORDS)
        lines += [
            f"def {a}_{b}_{i}(values: list[float], window: int = {rng.randint(2, 50)}) -> float:",
            f'    """Rolling {a} over {b} ({rng.random():.6f})."""',
            "    if not values:",
            "        return 0.0",
            "    tail = values[-window:]",
            f"    return sum(tail) / len(tail) * {rng.uniform(0.5, 2.0):.6f} + math.log1p(len(tail))",
            "",
        ]
    return "\n".join(lines) + "\n"


def generate(dest: Path, *, variant: int = 0, seed: int = 7, shape: Shape = Shape()) -> Path:
    """Write the code base into ``dest`` (emptied first); return ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    src = dest / "src"
    changed = set(random.Random(seed * 1000 + variant).sample(range(shape.modules), shape.changed_per_variant)) \
        if variant else set()
    for i in range(shape.modules):
        pkg = PACKAGES[i % len(PACKAGES)]
        path = src / pkg / f"sub{i % 13:02d}" / f"mod_{i:04d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        salt = f"v{variant}" if i in changed else "v0"
        path.write_text(_module(random.Random(f"{seed}-{i}-{salt}"), path.stem, salt))
    for pkg in PACKAGES:
        for init in (src / pkg).rglob("*"):
            if init.is_dir():
                (init / "__init__.py").touch()
        (src / pkg / "__init__.py").touch()
    data_rng = random.Random(seed + 1)
    for i in range(shape.data_files):
        path = dest / "models" / f"weights_{i:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data_rng.randbytes(shape.data_bytes))
    setup = src / "setup"
    setup.mkdir(parents=True, exist_ok=True)
    (setup / "setup.py").write_text("import numpy, pandas\nprint('trading', numpy.__version__, pandas.__version__)\n")
    (dest / "requirements.txt").write_text(requirements_text())
    return dest


def requirements_text(extra_comment: str = "") -> str:
    head = "# Generated benchmark workload: the trading program's pinned dependencies.\n"
    tail = f"# {extra_comment}\n" if extra_comment else ""
    return head + "\n".join(REQUIREMENTS) + "\n" + tail


def count_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file())
