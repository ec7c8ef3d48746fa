"""Recording benchmark results: bench/results/<name>.json and a readable entry in docs/BENCHMARKS.md."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

from embeddings.lake import code_version

REPO = Path(__file__).resolve().parent.parent


def machine() -> str:
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = float("nan")
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {platform.system()} {platform.machine()}"


def record(name: str, command: str, dataset: str, protocol: str, config: dict, metrics: dict,
           summary: list[str], results_dir: Path | None = None, markdown: Path | None = None) -> dict:
    """Write bench/results/<name>.json and append a dated entry to docs/BENCHMARKS.md; returns the record.

    ``results_dir`` and ``markdown`` put them elsewhere (a GPU machine's run writes both into its output folder,
    to be copied back: bench/device_check.sh).
    """
    entry = {
        "name": name,
        "commit": code_version(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": command,
        "dataset": dataset,
        "protocol": protocol,
        "config": config,
        "metrics": metrics,
    }
    out = Path(results_dir or REPO / "bench" / "results") / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(entry, indent=2, default=float) + "\n")
    lines = [
        f"\n## {name} — {entry['date'][:10]} ({entry['commit']})\n",
        f"- command: `{command}`",
        f"- machine: {entry['machine']}",
        f"- dataset: {dataset}",
        f"- protocol: {protocol}",
        *[f"- {s}" for s in summary],
        f"- full figures: `bench/results/{name}.json`\n",
    ]
    with open(markdown or REPO / "docs" / "BENCHMARKS.md", "a") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return entry
