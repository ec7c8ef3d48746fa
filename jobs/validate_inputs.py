"""Validate the raw inputs of one partition before anything downstream runs.

In: ``events`` ds=<ds>, the ``pins`` and ``boards`` snapshots (docs/DATA.md).
Out: nothing is written; the process fails (exit 1) with a message naming the table, the partition and
the problem, so the DAG stops before any stage touches the lake. Checks:

* the events partition exists, is readable Parquet and matches the contract (columns, types, no null ids);
* it is not empty, its actions are in the closed set, its timestamps fall inside the ds day, it has no
  duplicated rows, every save has a board and no other action has one;
* every pin and board it references exists in the snapshots; pins' own ``features`` are finite and of one
  length; the snapshots themselves match the contract and have unique ids.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embeddings.data.engagement import TRAINING_WINDOW_DAYS, training_window
from embeddings.data.schemas import ACTION_VALUES, BOARDS, EVENTS, PINS, Action
from embeddings.lake import Lake, LakeError, parse_ds
from embeddings.settings import Settings

log = logging.getLogger("jobs.validate_inputs")


class InputValidationError(ValueError):
    """Raw input violates the data contract."""


@dataclass(frozen=True)
class ValidateInputsConfig:
    lake_uri: str
    ds: dt.date
    window_days: int = TRAINING_WINDOW_DAYS

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))
        if self.window_days <= 0:
            raise ValueError(f"window_days must be positive, got {self.window_days}")


@dataclass
class ValidationReport:
    ds: str
    events: int = 0
    pins: int = 0
    boards: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    window_partitions: int = 0
    window_days: int = 0


def _fail(what: str, problem: str) -> InputValidationError:
    return InputValidationError(f"{what}: {problem}")


def _examples(values: np.ndarray, limit: int = 5) -> list:
    return np.unique(values)[:limit].tolist()


def check_events(events: pa.Table, ds: dt.date, what: str) -> dict[str, int]:
    """Contract checks on one conformed events partition; returns counts per action.

    Raises:
        InputValidationError: naming ``what`` (table and partition) and the problem.
    """
    if events.num_rows == 0:
        raise _fail(what, "has no rows; refusing to run the pipeline on an empty day")
    actions = events.column("action").to_numpy(zero_copy_only=False).astype(object)
    unknown = ~np.isin(actions, ACTION_VALUES)
    if unknown.any():
        raise _fail(
            what,
            f"{int(unknown.sum())} row(s) have unknown action values {_examples(actions[unknown])}; "
            f"expected one of {list(ACTION_VALUES)}",
        )
    ts = events.column("ts").to_numpy().astype("datetime64[D]")
    outside = ts != np.datetime64(ds)
    if outside.any():
        raise _fail(
            what,
            f"{int(outside.sum())} row(s) have ts outside the partition day {ds} "
            f"(e.g. days {[str(d) for d in np.unique(ts[outside])[:5]]}); events are partitioned by the UTC date of ts",
        )
    is_save = actions == Action.SAVE.value
    has_board = events.column("board_id").is_valid().to_numpy(zero_copy_only=False)
    if (is_save & ~has_board).any():
        raise _fail(what, f"{int((is_save & ~has_board).sum())} save(s) have a null board_id")
    if (~is_save & has_board).any():
        raise _fail(what, f"{int((~is_save & has_board).sum())} non-save action(s) carry a board_id")
    key = events.select(["user_id", "pin_id", "board_id", "action", "ts"])
    distinct = key.group_by(key.column_names).aggregate([]).num_rows
    if distinct != events.num_rows:
        raise _fail(what, f"{events.num_rows - distinct} duplicated row(s) (same user, pin, board, action, ts)")
    names, counts = np.unique(actions, return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def _check_unique(table: pa.Table, column: str, what: str) -> None:
    ids = table.column(column).to_numpy()
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise _fail(what, f"{int((counts > 1).sum())} duplicated {column}(s), e.g. {uniq[counts > 1][:5].tolist()}")


def check_pins(pins: pa.Table, what: str) -> None:
    """Unique ids; own ``features`` finite and of one length."""
    _check_unique(pins, "pin_id", what)
    feats = pins.column("features")
    if feats.null_count == len(feats):
        return
    present = pc.drop_null(pc.list_value_length(feats)).to_numpy()
    if len(np.unique(present)) > 1:
        raise _fail(what, f"features vectors have different lengths {np.unique(present)[:5].tolist()}")
    flat = pc.list_flatten(feats).to_numpy(zero_copy_only=False).astype(np.float64)
    if not np.isfinite(flat).all():
        dim = int(present[0])
        rows = np.flatnonzero(feats.is_valid().to_numpy(zero_copy_only=False))
        bad_rows = rows[~np.isfinite(flat.reshape(-1, dim)).all(axis=1)]
        ids = pins.column("pin_id").to_numpy()[bad_rows][:10].tolist()
        raise _fail(what, f"features has NaN/Inf for {len(bad_rows)} pin(s), e.g. pin_id {ids}")


def check_references(events: pa.Table, pins: pa.Table, boards: pa.Table, what: str) -> None:
    """Every referenced pin and board exists in the snapshots."""
    pin_ids = events.column("pin_id").to_numpy()
    missing = ~np.isin(pin_ids, pins.column("pin_id").to_numpy())
    if missing.any():
        raise _fail(
            what,
            f"{int(missing.sum())} row(s) reference pin_id(s) absent from the pins snapshot, "
            f"e.g. {_examples(pin_ids[missing])}",
        )
    board_col = events.column("board_id")
    board_ids = pc.drop_null(board_col).to_numpy()
    missing = ~np.isin(board_ids, boards.column("board_id").to_numpy())
    if missing.any():
        raise _fail(
            what,
            f"{int(missing.sum())} save(s) reference board_id(s) absent from the boards snapshot, "
            f"e.g. {_examples(board_ids[missing])}",
        )


def run(config: ValidateInputsConfig) -> ValidationReport:
    """Validate the inputs of ``config.ds``; raise on the first violated contract."""
    lake = Lake(config.lake_uri)
    report = ValidationReport(ds=config.ds.isoformat())
    try:
        events = lake.read(EVENTS, config.ds)
        pins = lake.read(PINS)
        boards = lake.read(BOARDS)
    except LakeError as exc:
        raise InputValidationError(str(exc)) from None
    what = lake.describe(EVENTS, config.ds)
    report.actions = check_events(events, config.ds, what)
    check_pins(pins, lake.describe(PINS, None))
    _check_unique(boards, "board_id", lake.describe(BOARDS, None))
    check_references(events, pins, boards, what)
    start, end = training_window(config.ds, config.window_days)
    present = [d for d in lake.list_partitions(EVENTS) if start <= d <= end]
    report.events, report.pins, report.boards = events.num_rows, pins.num_rows, boards.num_rows
    report.window_partitions, report.window_days = len(present), config.window_days
    if len(present) < config.window_days:
        log.warning(
            "events has %d of %d partitions in the window %s..%s; stages use what is there",
            len(present), config.window_days, start, end,
        )
    log.info(
        "inputs for ds=%s are valid: %d events %s, %d pins, %d boards",
        config.ds, report.events, report.actions, report.pins, report.boards,
    )
    return report


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m jobs.validate_inputs", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True, help="partition to validate, YYYY-MM-DD")
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--window-days", type=int, default=TRAINING_WINDOW_DAYS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(ValidateInputsConfig(lake_uri=args.lake_uri, ds=args.ds, window_days=args.window_days))
    except InputValidationError as exc:
        log.error("input validation failed: %s", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
