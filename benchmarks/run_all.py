"""Run every ``benchmarks/bench_*.py`` and assemble ``benchmarks/RESULTS.md``.

Each benchmark module exposes ``run() -> str`` returning a Markdown section whose figures are
ratios against a peer measured in the same run (rsatoolbox, a naive PyTorch loop, ...).
"""

from __future__ import annotations

import importlib
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str] | None = None) -> None:
    names = argv if argv else sorted(p.stem for p in HERE.glob("bench_*.py"))
    sections = []
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        section = importlib.import_module(f"benchmarks.{name}").run()
        print(section, flush=True)
        sections.append(section + f"\n\n_(section ran in {time.perf_counter() - t0:.0f} s)_\n")
    header = (
        "# Benchmark results\n\n"
        f"Command: `make bench` (= `.venv/bin/python -m benchmarks.run_all`), "
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        f"{__import__('os').cpu_count()} cores, Python {sys.version.split()[0]}.\n"
        "All figures are ratios against a peer measured in the same run.\n\n"
    )
    if argv:  # partial run: print only, keep the recorded full results
        return
    (HERE / "RESULTS.md").write_text(header + "\n\n".join(sections))


if __name__ == "__main__":
    main(sys.argv[1:])
