"""Embed the users and pins of one ds with the champion PinnerFormer model.

In: the ``champion`` version of the registered model ``pinnerformer`` (downloaded from the MLflow registry
and checked against its logged sha256 sums), ``user_sequences`` ds=<ds> (one row per user active in the
lookback window ending at ds), ``pin_embeddings`` ds=<ds> (the PinSage vectors the model's tokens and pin
tower read) and, in incremental mode, the latest earlier ``pinnerformer_user_embeddings`` partition.
Out: ``pinnerformer_user_embeddings`` ds=<ds> (user_id, unit-norm embedding, model_version
``pinnerformer/<N>``, pinsage_model_version, computed_ds) and ``pinnerformer_pin_embeddings`` ds=<ds>
(the pin tower over every pin of ``pin_embeddings``), each with a manifest.

Versions are never mixed: the champion records, as its tag ``pinsage_model_version``, the PinSage version
whose embeddings it was trained on; a ``pin_embeddings`` partition of another version is refused (both
versions named), since the user tower's tokens and the pin tower would read vectors of a space the model
never saw.

Serve mode: a user's embedding is the user tower's output at the latest of their latest M (the model's
``max_length``) actions up to the end of ds; users with fewer than 2 actions get no row (counted).

Incremental mode (default): a row of the latest committed ``pinnerformer_user_embeddings`` partition before
ds is carried over unchanged (``computed_ds`` kept) when the row's ``model_version`` and
``pinsage_model_version`` are both today's, the user is still in today's ``user_sequences`` and has no
action after the end of the row's ``computed_ds`` (so its latest M actions are those it was computed
from). Everyone else is recomputed; a champion change therefore recomputes everyone. The previous partition
is always strictly earlier, so rerunning a ds gives the same rows.

Both tables are computed and checked (finite, unit norm) before anything is written, so a failure while
reading, loading or computing leaves the published partitions as they were. Each table is then committed
atomically through the lake (staging + manifest), pins first and users last: the user table, which the next
incremental run reads, appears only once the pin table of the same versions is in place (the two commits
are two directory moves, not one transaction). Tables: docs/DATA.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from embeddings.data.schemas import (
    PIN_EMBEDDINGS,
    PINNERFORMER_PIN_EMBEDDINGS,
    PINNERFORMER_USER_EMBEDDINGS,
    USER_SEQUENCES,
)
from embeddings.lake import Lake, LakeError, Manifest, parse_ds
from embeddings.pinnerformer.data import SequenceOptions, UserSequences, collate_tokens
from embeddings.pinnerformer.lake import read_user_sequences, sequences_from_table
from embeddings.pinnerformer.model import PinnerFormer
from embeddings.pinnerformer.training import embed_all_pins
from embeddings.pinsage.training import resolve_device
from embeddings.settings import Settings

log = logging.getLogger("jobs.infer_pinnerformer")

REGISTERED_MODEL = "pinnerformer"
PINSAGE_VERSION_TAG = "pinsage_model_version"
MIN_ACTIONS = 2  # the issue: users with fewer actions get no embedding
UNIT_NORM_TOLERANCE = 1e-3
_NAMED = 10  # ids named in an error or a warning


class VersionMismatchError(RuntimeError):
    """The model and the ``pin_embeddings`` partition come from different PinSage versions."""


class InferenceInputError(LakeError):
    """An input partition cannot be embedded (empty, ragged, several versions)."""


@dataclass(frozen=True)
class InferPinnerFormerConfig:
    """Args:
        lake_uri: the lake with the inputs and the outputs.
        ds: the day to embed (the window ends at the end of ds).
        tracking_uri: the MLflow registry the model is loaded from.
        registered_model, alias: the version to serve (default ``pinnerformer@champion``; ``challenger`` only
            for trying a model out: the DAG always serves the champion).
        incremental: carry over unchanged users of the latest earlier partition (module docstring).
        batch_size: users per forward pass (users are batched by length, so padding stays small).
        device: ``auto``, ``cpu`` or ``cuda[:N]`` (bf16 autocast on CUDA, as in training).
        log_every_s: seconds between progress lines.
    """

    lake_uri: str
    ds: dt.date
    tracking_uri: str
    registered_model: str = REGISTERED_MODEL
    alias: str = "champion"
    incremental: bool = True
    batch_size: int = 512
    device: str = "auto"
    log_every_s: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if not self.tracking_uri:
            raise ValueError("a tracking_uri is needed to load the registered model from")
        if self.log_every_s <= 0:
            raise ValueError(f"log_every_s must be positive, got {self.log_every_s}")


@dataclass(frozen=True)
class InferPinnerFormerResult:
    """What a run wrote: the two manifests, the counts (the user manifest's ``extra``) and timings."""

    user_manifest: Manifest = field(repr=False)
    pin_manifest: Manifest = field(repr=False)
    stats: dict
    model_version: str
    pinsage_model_version: str
    seconds: float
    user_tower_seconds: float

    @property
    def users_per_s(self) -> float:
        """Recomputed users per second of the user tower alone."""
        return self.stats["users_recomputed"] / max(self.user_tower_seconds, 1e-9)


@dataclass(frozen=True)
class ServedVersions:
    """The two versions every row written is stamped with, and a carried-over row must have."""

    model_version: str  # <registered_model>/<N>
    pinsage_model_version: str  # the pin_embeddings it reads (the model version's tag)


def run(config: InferPinnerFormerConfig) -> InferPinnerFormerResult:
    """Embed the users and pins of ``config.ds`` and write both tables.

    Raises:
        ModelVersionNotFound: no version has the alias ("no champion yet").
        ModelLoadError: the version's files are missing, corrupt or do not load (the version is named).
        VersionMismatchError: the model's PinSage version differs from ``pin_embeddings``' of ds.
        PartitionMissingError: ``user_sequences`` or ``pin_embeddings`` of ds is missing.
        InferenceInputError: an empty or inconsistent input partition.
        ValueError: embeddings that are not finite and unit norm (nothing is written).
    """
    from embeddings.registry.tracking import connect

    started = time.perf_counter()
    lake = Lake(config.lake_uri)
    device = resolve_device(config.device)
    client = connect(config.tracking_uri)  # fails fast on an unreachable store
    mv = resolve_champion(client, config)
    registry_version = str(mv.version)
    model_version = f"{config.registered_model}/{registry_version}"
    pinsage_version = mv.tags.get(PINSAGE_VERSION_TAG)
    if not pinsage_version:
        raise VersionMismatchError(
            f"registered model {config.registered_model!r} version {registry_version} (alias {config.alias!r}) has "
            f"no {PINSAGE_VERSION_TAG!r} tag, so the PinSage embeddings it was trained on are unknown; refusing to "
            "embed with it (register it with jobs.train_pinnerformer)")

    # Cheap checks first: the inputs of ds and the versions, before downloading the model.
    pin_manifest_in = lake.read_manifest(PIN_EMBEDDINGS, config.ds)
    pin_ids, pin_vectors, pin_table_version = load_pin_embeddings(lake, config.ds)
    if pin_table_version != pinsage_version:
        raise VersionMismatchError(
            f"{model_version} (alias {config.alias!r}) was trained on PinSage {pinsage_version}, but "
            f"{lake.describe(PIN_EMBEDDINGS, config.ds)} holds {pin_table_version}; refusing to mix user and pin "
            f"embeddings from different upstream versions (rerun jobs.infer_pinsage for ds={config.ds} with "
            f"{pinsage_version}, or train and promote a PinnerFormer on {pin_table_version})")
    sequences_manifest = lake.read_manifest(USER_SEQUENCES, config.ds)
    table = read_user_sequences(lake, config.ds)

    model = load_registered_model(client, config, registry_version)
    champion = ServedVersions(model_version, pinsage_version)
    c = model.config
    if c.id_only:
        raise ValueError(f"{model_version} is an id-only model (num_items={c.num_items}); the inference job "
                         "serves PinSage-mode models only")
    if pin_vectors.shape[1] != c.pin_dim:
        raise InferenceInputError(
            f"{lake.describe(PIN_EMBEDDINGS, config.ds)} has {pin_vectors.shape[1]}-d vectors but {model_version} "
            f"expects pin_dim={c.pin_dim}")
    model.attach_pin_table(torch.from_numpy(pin_vectors))
    model.to(device).eval()
    log.info("serving %s (PinSage %s) on %s: %d pins, %d user rows in %s", model_version, pinsage_version,
             device, len(pin_ids), table.num_rows, lake.describe(USER_SEQUENCES, config.ds))

    options = SequenceOptions(max_length=c.max_length, min_actions=MIN_ACTIONS)
    seqs, user_ids = sequences_from_table(table, pin_ids, mode="serve", options=options,
                                          now_ts=end_of_day_s(config.ds) - 1)
    if seqs.num_users == 0:
        raise InferenceInputError(
            f"{lake.describe(USER_SEQUENCES, config.ds)} has no user with at least {MIN_ACTIONS} actions up to the "
            f"end of ds ({table.num_rows} row(s), {seqs.counts.num_users_short} too short); refusing to publish an "
            f"empty {PINNERFORMER_USER_EMBEDDINGS.name} partition")
    latest_ts = seqs.ts[seqs.input_end - 1]

    previous = previous_partition(lake, config, options)
    carried_rows, carried_mask = carry_over(lake, previous, user_ids, latest_ts, champion)
    recompute = np.flatnonzero(~carried_mask)

    compute_started = time.perf_counter()
    user_vectors = embed_users_batched(model, seqs, recompute, device, config.batch_size, config.log_every_s)
    user_tower_seconds = time.perf_counter() - compute_started
    pin_tower = embed_all_pins(model, device)
    pin_seconds = time.perf_counter() - compute_started - user_tower_seconds
    check_unit_norm(user_vectors, user_ids[recompute], f"{model_version}: user embeddings of ds={config.ds}", "user_id")
    check_unit_norm(pin_tower, pin_ids, f"{model_version}: pin-tower embeddings of ds={config.ds}", "pin_id")

    users = user_rows(user_ids[recompute], user_vectors, champion, config.ds, carried_rows)
    tokens = token_events(seqs, recompute)
    upstream = sequences_manifest.extra
    stats = {
        "model_version": model_version,
        "pinsage_model_version": pinsage_version,
        "registered_model": f"{config.registered_model}@{config.alias}",
        "users": int(users.num_rows),
        "users_carried_over": int(carried_mask.sum()),
        "users_recomputed": int(len(recompute)),
        # Rows of user_sequences left out here for fewer than MIN_ACTIONS actions up to the end of ds; users
        # with fewer than that in the window have no row there at all (users_short_upstream).
        "users_short": int(seqs.counts.num_users_short),
        "users_short_upstream": upstream.get("users_short"),
        "users_truncated": int(seqs.counts.num_users_truncated),
        "events_rejected_future_ts": int(seqs.counts.num_future_rejected),
        # Tokens of the recomputed users whose pin has no pin_embeddings row (the learned unknown-pin token).
        "unknown_pin_events": int((seqs.pins[tokens] < 0).sum()),
        "pins": int(len(pin_ids)),
        "embedding_dim": int(c.embedding_dim),
        "previous_ds": previous[0].isoformat() if previous else None,
        "incremental": config.incremental,
        "params": sequence_params(options),
        "device": str(device),
        "user_tower_seconds": round(user_tower_seconds, 3),
        "pin_tower_seconds": round(pin_seconds, 3),
    }
    inputs = [sequences_manifest, pin_manifest_in] + ([previous[1]] if previous else [])
    pins_out = pin_rows(pin_ids, pin_tower, champion)
    # Pins first, users last: the user table (read by the next incremental run) is committed only once the
    # pin table of the same versions is in place.
    pin_manifest = lake.write(PINNERFORMER_PIN_EMBEDDINGS, pins_out, config.ds, inputs=[pin_manifest_in],
                              extra={k: stats[k] for k in ("model_version", "pinsage_model_version",
                                                           "registered_model", "pins", "embedding_dim")})
    user_manifest = lake.write(PINNERFORMER_USER_EMBEDDINGS, users, config.ds, inputs=inputs, extra=stats)
    seconds = time.perf_counter() - started
    result = InferPinnerFormerResult(user_manifest, pin_manifest, stats, model_version, pinsage_version, seconds,
                                     user_tower_seconds)
    log.info("pinnerformer ds=%s: %d users (%d carried over, %d recomputed at %.0f users/s, %d short), %d pins; "
             "%.1f s in all", config.ds, stats["users"], stats["users_carried_over"], stats["users_recomputed"],
             result.users_per_s, stats["users_short"], stats["pins"], seconds)
    return result


# ---- the registry ----------------------------------------------------------------------------------


def resolve_champion(client, config: InferPinnerFormerConfig):
    """The ``ModelVersion`` of ``registered_model@alias``.

    Raises:
        ModelVersionNotFound: no version has the alias; for ``champion``, the message says none was promoted.
    """
    from embeddings.registry.models import ModelVersionNotFound, resolve_version

    try:
        return resolve_version(client, config.registered_model, alias=config.alias)
    except ModelVersionNotFound as exc:
        hint = ("no champion yet: run jobs.evaluate_pinnerformer to promote a trained version (or pass "
                "--alias challenger to try the latest one)") if config.alias == "champion" else "nothing to serve"
        raise ModelVersionNotFound(f"{exc}; {hint}") from exc


def load_registered_model(client, config: InferPinnerFormerConfig, version: str) -> PinnerFormer:
    """Download version ``version`` (every file checked against its logged sha256) and load it with the
    loader recorded in the registry (``embeddings.pinnerformer.model_dir:load_model_dir``).

    Raises:
        ModelLoadError: the files are missing or corrupt, or the directory does not load (version named).
    """
    from embeddings.registry.models import ModelLoadError, load_model

    model, _ = load_model(client, config.registered_model, alias=None, version=version)
    if not isinstance(model, PinnerFormer):
        raise ModelLoadError(f"registered model {config.registered_model!r} version {version} (alias "
                             f"{config.alias!r}) loads as {type(model).__name__}, not a PinnerFormer")
    log.info("loaded %s@%s = version %s from %s", config.registered_model, config.alias, version, config.tracking_uri)
    return model


# ---- inputs ----------------------------------------------------------------------------------------


def end_of_day_s(ds: dt.date) -> int:
    """UTC seconds at the end of ``ds`` (midnight starting the next day)."""
    return int((dt.datetime.combine(ds + dt.timedelta(days=1), dt.time(), dt.timezone.utc)).timestamp())


def load_pin_embeddings(lake: Lake, ds: dt.date) -> tuple[np.ndarray, np.ndarray, str]:
    """``pin_embeddings`` of ``ds`` as (sorted pin ids (P,), vectors (P, D) float32, its one model_version).

    Raises:
        PartitionMissingError: no such partition.
        InferenceInputError: no rows, several model versions, ragged or non-finite vectors, repeated ids.
    """
    table = lake.read(PIN_EMBEDDINGS, ds)
    what = lake.describe(PIN_EMBEDDINGS, ds)
    if table.num_rows == 0:
        raise InferenceInputError(f"{what} has no rows; there are no pins to embed users over")
    versions = pc.unique(table.column("model_version")).to_pylist()
    if len(versions) != 1:
        raise InferenceInputError(f"{what} holds {len(versions)} model versions ({versions[:5]}); expected one")
    pin_ids = table.column("pin_id").to_numpy()
    embedding = table.column("embedding").combine_chunks()
    lengths = pc.list_value_length(embedding).to_numpy(zero_copy_only=False)
    if lengths.min() != lengths.max() or lengths[0] == 0:
        raise InferenceInputError(f"{what}: vectors have lengths {lengths.min()}..{lengths.max()}; expected one")
    vectors = embedding.flatten().to_numpy().astype(np.float32).reshape(len(pin_ids), int(lengths[0]))
    order = np.argsort(pin_ids, kind="stable")
    pin_ids, vectors = pin_ids[order].astype(np.int64), np.ascontiguousarray(vectors[order])
    if len(pin_ids) > 1 and (np.diff(pin_ids) == 0).any():
        raise InferenceInputError(f"{what}: repeated pin ids {np.unique(pin_ids[1:][np.diff(pin_ids) == 0])[:_NAMED]}")
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise InferenceInputError(f"{what}: {int(bad.sum())} vector(s) with NaN or Inf, e.g. pin_id "
                                  f"{pin_ids[bad][:_NAMED].tolist()}")
    return pin_ids, vectors, str(versions[0])


def sequence_params(options: SequenceOptions) -> dict:
    """What a user's row depends on besides the two model versions and its actions."""
    return {"max_length": options.max_length, "min_actions": options.min_actions}


def previous_partition(lake: Lake, config: InferPinnerFormerConfig,
                       options: SequenceOptions) -> tuple[dt.date, Manifest] | None:
    """The latest committed ``pinnerformer_user_embeddings`` partition before ds whose rows may be carried
    over (same sequence parameters), or None (a full run)."""
    if not config.incremental:
        return None
    earlier = [d for d in lake.list_partitions(PINNERFORMER_USER_EMBEDDINGS) if d < config.ds]
    if not earlier:
        log.info("incremental: no %s partition before %s; computing every user", PINNERFORMER_USER_EMBEDDINGS.name,
                 config.ds)
        return None
    manifest = lake.read_manifest(PINNERFORMER_USER_EMBEDDINGS, earlier[-1])
    if manifest.extra.get("params") != sequence_params(options):
        log.info("incremental: %s ds=%s used %s, this run %s; computing every user", PINNERFORMER_USER_EMBEDDINGS.name,
                 earlier[-1], manifest.extra.get("params"), sequence_params(options))
        return None
    return earlier[-1], manifest


def carry_over(lake: Lake, previous: tuple[dt.date, Manifest] | None, user_ids: np.ndarray, latest_ts: np.ndarray,
               champion: ServedVersions) -> tuple[pa.Table | None, np.ndarray]:
    """Rows of the previous partition that stay valid, and which of today's users (U,) they cover.

    A row is kept when its two versions are today's and the user (in ``user_ids``, ascending) has no action
    after the end of the row's ``computed_ds``: ``latest_ts`` (U,) is each user's latest action (UTC s).
    """
    keep = np.zeros(len(user_ids), dtype=bool)
    if previous is None:
        return None, keep
    prev_ds, _ = previous
    rows = lake.read(PINNERFORMER_USER_EMBEDDINGS, prev_ds)
    same = pc.and_(pc.equal(rows.column("model_version"), champion.model_version),
                   pc.equal(rows.column("pinsage_model_version"), champion.pinsage_model_version))
    rows = rows.filter(same)
    prev_users = rows.column("user_id").to_numpy()
    pos = np.searchsorted(user_ids, prev_users)
    found = pos < len(user_ids)
    found[found] = user_ids[pos[found]] == prev_users[found]
    computed_end = np.array([end_of_day_s(d) for d in rows.column("computed_ds").to_pylist()], dtype=np.int64)
    quiet = np.zeros(len(prev_users), dtype=bool)
    quiet[found] = latest_ts[pos[found]] < computed_end[found]
    keep[pos[quiet]] = True
    log.info("incremental: %d of %d rows of %s ds=%s have today's versions (%s, %s); %d users carried over",
             rows.num_rows, lake.read_manifest(PINNERFORMER_USER_EMBEDDINGS, prev_ds).row_count,
             PINNERFORMER_USER_EMBEDDINGS.name, prev_ds, champion.model_version, champion.pinsage_model_version,
             int(keep.sum()))
    return rows.filter(pa.array(quiet)), keep


# ---- computing -------------------------------------------------------------------------------------


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


@torch.no_grad()
def embed_users_batched(model: PinnerFormer, seqs: UserSequences, users: np.ndarray, device: torch.device,
                        batch_size: int, log_every_s: float = 30.0) -> np.ndarray:
    """(len(users), E) float32 embeddings of rows ``users`` of ``seqs`` at their latest token.

    Users are batched in order of token count (ties by row), so a batch pads little; a progress line with
    users/s, tokens/s and the ETA (from the tokens left, since the longest users come last) is logged every
    ``log_every_s``.
    """
    out = np.empty((len(users), model.config.embedding_dim), dtype=np.float32)
    lengths = seqs.token_lengths[users]
    order = np.lexsort((users, lengths))
    total_tokens, done_tokens = int(lengths.sum()), 0
    started = last = time.perf_counter()
    for a in range(0, len(users), batch_size):
        index = order[a:a + batch_size]
        with _autocast(device):
            vectors = model.embed_users(collate_tokens(seqs, users[index]).to(device))
        out[index] = vectors.float().cpu().numpy()
        now = time.perf_counter()
        done, done_tokens = a + len(index), done_tokens + int(lengths[index].sum())
        if now - last >= log_every_s or done == len(users):
            elapsed = max(now - started, 1e-9)
            log.info("user tower: %d/%d users (%.1f%% of the tokens), %.0f users/s, %.0f tokens/s, ETA %.0f s", done,
                     len(users), 100.0 * done_tokens / max(total_tokens, 1), done / elapsed, done_tokens / elapsed,
                     (total_tokens - done_tokens) / max(done_tokens / elapsed, 1e-9))
            last = now
    return out


def token_events(seqs: UserSequences, users: np.ndarray) -> np.ndarray:
    """Absolute event indices of the model tokens of rows ``users`` of ``seqs``."""
    starts, lengths = seqs.input_start[users], seqs.input_end[users] - seqs.input_start[users]
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return (offsets + np.arange(int(lengths.sum()))).astype(np.int64)


def check_unit_norm(vectors: np.ndarray, ids: np.ndarray, what: str, id_name: str) -> None:
    """Raise ValueError naming a few ids unless every row is finite with unit L2 norm."""
    norms = np.linalg.norm(vectors, axis=1) if len(vectors) else np.zeros(0)
    bad = ~np.isfinite(vectors).all(axis=1) | (np.abs(norms - 1.0) > UNIT_NORM_TOLERANCE)
    if bad.any():
        raise ValueError(f"{what}: {int(bad.sum())} vector(s) are not finite with unit norm, e.g. {id_name} "
                         f"{ids[bad][:_NAMED].tolist()}; refusing to publish them")


def _vectors(matrix: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1]).cast(pa.list_(pa.float32()))


def user_rows(user_ids: np.ndarray, vectors: np.ndarray, champion: ServedVersions, ds: dt.date,
              carried: pa.Table | None) -> pa.Table:
    """The ``pinnerformer_user_embeddings`` rows: the computed users plus the carried ones, by user_id."""
    n = len(user_ids)
    computed = pa.table({
        "user_id": pa.array(user_ids, pa.int64()),
        "embedding": _vectors(vectors),
        "model_version": pa.repeat(pa.scalar(champion.model_version, pa.string()), n),
        "pinsage_model_version": pa.repeat(pa.scalar(champion.pinsage_model_version, pa.string()), n),
        "computed_ds": pa.repeat(pa.scalar(ds, pa.date32()), n),
    }, schema=PINNERFORMER_USER_EMBEDDINGS.schema)
    table = computed if carried is None else pa.concat_tables([computed, carried.select(computed.column_names)
                                                               .cast(PINNERFORMER_USER_EMBEDDINGS.schema)])
    return table.sort_by("user_id")


def pin_rows(pin_ids: np.ndarray, vectors: np.ndarray, champion: ServedVersions) -> pa.Table:
    """The ``pinnerformer_pin_embeddings`` rows, in pin_id order."""
    n = len(pin_ids)
    return pa.table({
        "pin_id": pa.array(pin_ids, pa.int64()),
        "embedding": _vectors(vectors),
        "model_version": pa.repeat(pa.scalar(champion.model_version, pa.string()), n),
        "pinsage_model_version": pa.repeat(pa.scalar(champion.pinsage_model_version, pa.string()), n),
    })


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    defaults = InferPinnerFormerConfig(lake_uri=settings.lake_uri, ds=dt.date(2000, 1, 1), tracking_uri="unused")
    parser = argparse.ArgumentParser(prog="python -m jobs.infer_pinnerformer", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--tracking-uri", default=settings.mlflow_tracking_uri)
    parser.add_argument("--registered-model", default=REGISTERED_MODEL)
    parser.add_argument("--alias", default=defaults.alias,
                        help="the version to serve (default champion; challenger only to try a model out)")
    parser.add_argument("--incremental", action=argparse.BooleanOptionalAction, default=defaults.incremental,
                        help="carry over unchanged users of the latest earlier partition (default: on)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--device", default=settings.device)
    parser.add_argument("--log-every-s", type=float, default=defaults.log_every_s)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(InferPinnerFormerConfig(
        lake_uri=args.lake_uri, ds=args.ds, tracking_uri=args.tracking_uri, registered_model=args.registered_model,
        alias=args.alias, incremental=args.incremental, batch_size=args.batch_size, device=args.device,
        log_every_s=args.log_every_s))
    print(json.dumps({"stats": result.stats, "seconds": round(result.seconds, 2),
                      "users_per_s": round(result.users_per_s, 1)}, default=str))


if __name__ == "__main__":
    main()
