"""Print what the lake holds for one ds: each table's partition, row count, inputs and code version.

In: the manifests of every registered table. Out: a table on stdout (nothing is written).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from embeddings.data.schemas import TABLES
from embeddings.lake import Lake, LakeError, parse_ds
from embeddings.settings import Settings


@dataclass(frozen=True)
class DescribeLakeConfig:
    lake_uri: str
    ds: dt.date

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))


def _summarize_inputs(inputs: list[dict]) -> str:
    """``events x14, pins`` rather than one name per input partition."""
    counts: dict[str, int] = {}
    for ref in inputs:
        counts[ref["table"]] = counts.get(ref["table"], 0) + 1
    return ", ".join(f"{t} x{n}" if n > 1 else t for t, n in counts.items()) or "-"


def describe(config: DescribeLakeConfig) -> list[dict]:
    """One row per registered table: where its partition for ds (or snapshot) is and what it holds."""
    lake = Lake(config.lake_uri)
    rows = []
    for name in sorted(TABLES):
        spec = TABLES[name]
        try:
            manifest = lake.read_manifest(spec, config.ds if spec.partitioned_by_ds else None)
        except LakeError:
            continue
        rows.append({
            "table": name,
            "partition": f"ds={manifest.ds}" if manifest.ds else "snapshot",
            "rows": manifest.row_count,
            "inputs": _summarize_inputs(manifest.inputs),
            "code_version": manifest.code_version,
            "path": lake.partition_path(spec, config.ds if spec.partitioned_by_ds else None),
        })
    return rows


def run(config: DescribeLakeConfig) -> list[dict]:
    rows = describe(config)
    print(f"{'table':<26} {'partition':<14} {'rows':>12}  {'built from':<28} path")
    for r in rows:
        print(f"{r['table']:<26} {r['partition']:<14} {r['rows']:>12,}  {r['inputs']:<28} {r['path']}")
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobs.describe_lake", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=Settings.from_env().lake_uri)
    args = parser.parse_args(argv)
    run(DescribeLakeConfig(lake_uri=args.lake_uri, ds=args.ds))


if __name__ == "__main__":
    main()
