"""Content features for every pin that exists at the end of ds.

In: the ``pins`` snapshot (pins with created_ts before the end of ds).
Out: ``pin_features`` ds=<ds> (pin_id, features), with a manifest. IDF is fitted on that corpus, so the
vectors are a pure function of the snapshot and ds (reruns are identical).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embeddings.data.features import DEFAULT_TEXT_DIM, content_features
from embeddings.data.schemas import PIN_FEATURES, PINS
from embeddings.lake import Lake, Manifest, parse_ds
from embeddings.settings import Settings

log = logging.getLogger("jobs.build_features")


@dataclass(frozen=True)
class BuildFeaturesConfig:
    lake_uri: str
    ds: dt.date
    text_dim: int = DEFAULT_TEXT_DIM

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))
        if self.text_dim <= 0:
            raise ValueError(f"text_dim must be positive, got {self.text_dim}")


def pins_as_of(pins: pa.Table, ds: dt.date) -> pa.Table:
    """Pins created before the end of ``ds`` (UTC), sorted by pin_id."""
    end = pa.scalar(dt.datetime.combine(ds + dt.timedelta(days=1), dt.time(), dt.timezone.utc), PINS.schema.field("created_ts").type)
    return pins.filter(pc.less(pins.column("created_ts"), end)).sort_by("pin_id")


def run(config: BuildFeaturesConfig) -> Manifest:
    lake = Lake(config.lake_uri)
    started = time.perf_counter()
    pins = pins_as_of(lake.read(PINS), config.ds)
    if pins.num_rows == 0:
        raise ValueError(f"{lake.describe(PINS, None)} has no pins created before the end of ds={config.ds}")
    pin_ids = pins.column("pin_id").to_numpy()
    own = pins.column("features")
    user_features = own.to_pylist() if own.null_count < len(own) else None
    try:
        vectors = content_features(pin_ids, pins.column("text").to_pylist(), user_features, config.text_dim)
    except ValueError as exc:  # bad user features: name the snapshot and ds to act on
        raise ValueError(f"{lake.describe(PINS, None)} (pins as of ds={config.ds}): {exc}") from None
    dim = vectors.shape[1]
    table = pa.table(
        {
            "pin_id": pin_ids,
            "features": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim).cast(
                pa.list_(pa.float32())
            ),
        }
    )
    manifest = lake.write(
        PIN_FEATURES, table, config.ds,
        inputs=[lake.read_manifest(PINS)],
        extra={"dim": int(dim), "text_dim": config.text_dim, "with_user_features": user_features is not None,
               "zero_text_vectors": int((np.abs(vectors[:, : config.text_dim]).sum(axis=1) == 0).sum())},
    )
    elapsed = time.perf_counter() - started
    log.info("pin_features ds=%s: %d pins x %d dims in %.1f s (%.0f pins/s)",
             config.ds, len(pin_ids), dim, elapsed, len(pin_ids) / max(elapsed, 1e-9))
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m jobs.build_features", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--text-dim", type=int, default=DEFAULT_TEXT_DIM)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(BuildFeaturesConfig(lake_uri=args.lake_uri, ds=args.ds, text_dim=args.text_dim))


if __name__ == "__main__":
    main()
