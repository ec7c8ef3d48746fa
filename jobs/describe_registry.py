"""Print a registered model's versions: aliases, the ds each was trained on, the promotion decision.

    python -m jobs.describe_registry --model pinsage
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from embeddings.settings import Settings


def describe(tracking_uri: str, name: str) -> list[str]:
    """One line per version, newest first (an empty registry says so)."""
    from embeddings.registry.models import is_not_found
    from embeddings.registry.tracking import connect

    client = connect(tracking_uri)
    try:
        aliases = client.get_registered_model(name).aliases
    except Exception as exc:  # noqa: BLE001
        if is_not_found(exc):
            return [f"  registered model {name!r}: no versions yet"]
        raise
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    lines = []
    for mv in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: -int(v.version)):
        tags = mv.tags
        decision = tags.get("promotion.decision", "not evaluated")
        diff = tags.get("promotion.mean_diff")
        interval = (f" diff {diff} [{tags.get('promotion.ci_low')}, {tags.get('promotion.ci_high')}]"
                    if diff is not None else "")
        lines.append(f"  {name} v{mv.version:<3} ds={tags.get('ds', '?'):<10} "
                     f"aliases={','.join(sorted(by_version.get(str(mv.version), []))) or '-':<20} "
                     f"{decision}: {tags.get('promotion.reason', '')}{interval}  run {mv.run_id}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m jobs.describe_registry", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pinsage")
    parser.add_argument("--tracking-uri", default=settings.mlflow_tracking_uri)
    args = parser.parse_args(argv)
    print("\n".join(describe(args.tracking_uri, args.model)))


if __name__ == "__main__":
    main()
