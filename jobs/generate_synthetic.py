"""Generate a seeded synthetic lake with planted structure (docs/SYNTHETIC.md).

In: nothing (a seed, a scale preset and overrides).
Out: ``events`` ds=<day> for each of the ``num_days`` days ending at ``ds`` (ts inside each UTC day); the
``pins`` and ``boards`` snapshots; the planted truth: ``synthetic_topics``, ``synthetic_pin_topics``,
``synthetic_board_topics``, ``synthetic_users`` (snapshots) and ``synthetic_user_interests`` ds=<day>.
Reruns with the same config rewrite every partition with identical data.

    python -m jobs.generate_synthetic --ds 2026-01-30 --scale demo
    python -m jobs.generate_synthetic --ds 2026-01-30 --scale tiny --set topic_word_fraction=0.4
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from embeddings.data import synthetic
from embeddings.data.schemas import EVENTS, SYNTHETIC_USER_INTERESTS
from embeddings.lake import Lake, Manifest, parse_ds
from embeddings.settings import Settings

log = logging.getLogger("jobs.generate_synthetic")


def _default_lake_uri() -> str:
    return Settings.from_env().lake_uri


@dataclass(frozen=True)
class GenerateSyntheticConfig:
    """What to generate: the window ``num_days`` days ending at ``ds``, from ``seed`` at ``scale``.

    ``num_days`` None takes the preset's; ``overrides`` replaces fields of ``synthetic.SyntheticParams``
    (e.g. ``{"num_pins": 5000, "topic_word_fraction": 0.4}``).
    """

    ds: dt.date
    lake_uri: str = field(default_factory=_default_lake_uri)
    num_days: int | None = None
    seed: int = 0
    scale: str = "demo"
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))
        if self.num_days is not None and self.num_days <= 0:
            raise ValueError(f"num_days must be positive, got {self.num_days}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        if "num_days" in self.overrides:
            raise ValueError("set num_days with the num_days field, not in overrides")
        object.__setattr__(self, "overrides", dict(self.overrides))
        _ = self.params  # validate the scale and the overrides now, at the boundary

    @property
    def params(self) -> synthetic.SyntheticParams:
        overrides = dict(self.overrides)
        if self.num_days is not None:
            overrides["num_days"] = self.num_days
        return synthetic.make_params(self.scale, overrides)

    @property
    def start(self) -> dt.date:
        return self.ds - dt.timedelta(days=self.params.num_days - 1)


@dataclass(frozen=True)
class GenerateSyntheticResult:
    days: list[dt.date]
    num_events: int
    manifests: dict[str, list[Manifest]]  # table name -> manifests written (one per day for ds tables)


def _fingerprint(params: synthetic.SyntheticParams, seed: int, start: dt.date) -> str:
    text = json.dumps({"params": asdict(params), "seed": seed, "start": start.isoformat()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run(config: GenerateSyntheticConfig) -> GenerateSyntheticResult:
    """Generate the world and write every table of it (see the module docstring)."""
    lake = Lake(config.lake_uri)
    params, start = config.params, config.start
    extra = {"generator": "embeddings.data.synthetic", "scale": config.scale, "seed": config.seed,
             "window": [start.isoformat(), config.ds.isoformat()],
             "fingerprint": _fingerprint(params, config.seed, start)}
    started = time.perf_counter()
    world = synthetic.generate_world(params, config.seed, start)
    log.info("world: %d pins, %d users, %d boards, %d topics in %.1f s", len(world.pin_ids),
             len(world.user_ids), len(world.board_ids), params.num_topics, time.perf_counter() - started)

    manifests: dict[str, list[Manifest]] = {}
    for spec, table in synthetic.snapshot_tables(world):
        manifests[spec.name] = [lake.write(spec, table, None, extra=extra)]

    stale = [d for d in lake.list_partitions(EVENTS) if not start <= d <= config.ds]
    if stale:
        log.warning("events has %d partition(s) outside the generated window %s..%s (e.g. ds=%s) from "
                    "an earlier run; they do not match the new pins/boards snapshots",
                    len(stale), start, config.ds, stale[0])

    snapshot_inputs = [m[0] for m in manifests.values()]
    num_events, days_started = 0, time.perf_counter()
    for index, day in enumerate(synthetic.generate_days(world)):
        manifests.setdefault(EVENTS.name, []).append(
            lake.write(EVENTS, day.events, day.ds, inputs=snapshot_inputs, extra=extra))
        manifests.setdefault(SYNTHETIC_USER_INTERESTS.name, []).append(
            lake.write(SYNTHETIC_USER_INTERESTS, day.interests, day.ds, extra=extra))
        num_events += day.events.num_rows
        elapsed = time.perf_counter() - days_started
        done = index + 1
        log.info("day %d/%d ds=%s: %d events (%.0f events/s overall), ETA %.0f s", done, params.num_days,
                 day.ds, day.events.num_rows, num_events / max(elapsed, 1e-9),
                 elapsed / done * (params.num_days - done))
    log.info("generated %d events over %d days ending %s into %s in %.1f s", num_events, params.num_days,
             config.ds, config.lake_uri, time.perf_counter() - started)
    return GenerateSyntheticResult(days=world.days, num_events=num_events, manifests=manifests)


def _parse_override(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobs.generate_synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True, help="last day of the window, YYYY-MM-DD")
    parser.add_argument("--lake-uri", default=None, help="default: EMB_LAKE_URI / Settings")
    parser.add_argument("--scale", default="demo", choices=sorted(synthetic.PRESETS))
    parser.add_argument("--num-days", type=int, default=None, help="default: the preset's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", type=_parse_override, action="append", default=[],
                        metavar="NAME=VALUE", help="override a SyntheticParams field (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = GenerateSyntheticConfig(
        ds=args.ds, lake_uri=args.lake_uri or _default_lake_uri(), num_days=args.num_days, seed=args.seed,
        scale=args.scale, overrides=dict(args.overrides),
    )
    run(config)


if __name__ == "__main__":
    main()
