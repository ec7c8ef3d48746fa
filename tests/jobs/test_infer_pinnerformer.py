"""jobs.infer_pinnerformer through a real MLflow registry (SQLite) on a tiny lake written in the test."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from embeddings.data.schemas import (
    PIN_EMBEDDINGS,
    PINNERFORMER_PIN_EMBEDDINGS,
    PINNERFORMER_USER_EMBEDDINGS,
    USER_SEQUENCES,
)
from embeddings.lake import PartitionMissingError
from embeddings.pinnerformer.data import SequenceOptions
from embeddings.pinnerformer.lake import sequences_from_table, user_split
from embeddings.pinnerformer.model import PinnerFormerConfig, build_model
from embeddings.pinnerformer.model_dir import LOADER, save_model_dir
from embeddings.pinnerformer.training import embed_users
from embeddings.registry.models import ModelLoadError, ModelVersionNotFound, log_model_dir, register_version, set_alias
from embeddings.registry.tracking import start_run
from jobs.infer_pinnerformer import (
    InferPinnerFormerConfig,
    VersionMismatchError,
    check_unit_norm,
    main,
    run,
)
from tests.pinnerformer.tiny_data import one_torch_thread  # noqa: F401 (a fixture)
from tests.registry.mlflow_store import store  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.mlflow, pytest.mark.usefixtures("one_torch_thread")]

D1, D2 = dt.date(2026, 3, 30), dt.date(2026, 3, 31)
PIN_IDS = np.arange(1000, 1030, dtype=np.int64)
UNKNOWN_PIN = 9999
CONFIG = PinnerFormerConfig(pin_dim=8, model_dim=16, embedding_dim=8, num_layers=1, num_heads=2, ff_dim=32,
                            max_length=8, pin_hidden_dim=16, dropout=0.0, action_dim=4, surface_dim=4)
BASE = dt.datetime(2026, 3, 20, tzinfo=dt.timezone.utc)


def _actions(user: int, n: int, start_h: int = 0) -> list[tuple[int, str, dt.datetime]]:
    kinds = ("save", "click", "closeup")
    return [(int(PIN_IDS[(user * 7 + i) % len(PIN_IDS)]), kinds[i % 3], BASE + dt.timedelta(hours=start_h + 5 * i))
            for i in range(n)]


# Users at D1: 3 has more actions than max_length (8), 4 one action on a pin without a PinSage row, 5 only one
# action (no embedding, counted), 6 is gone by D2.
TIMELINES_D1 = {
    1: _actions(1, 5), 2: _actions(2, 3), 3: _actions(3, 12),
    4: [(UNKNOWN_PIN, "save", BASE), (1003, "click", BASE + dt.timedelta(hours=2))],
    5: _actions(5, 1), 6: _actions(6, 4),
}
# At D2: user 2 acts on D2, user 7 is new, user 6 has left the window; 1, 3 and 4 are quiet.
TIMELINES_D2 = {u: t for u, t in TIMELINES_D1.items() if u != 6}
TIMELINES_D2[2] = [*TIMELINES_D1[2], (1011, "save", dt.datetime(2026, 3, 31, 10, tzinfo=dt.timezone.utc))]
TIMELINES_D2[7] = _actions(7, 3, start_h=24)


def sequences_table(timelines: dict[int, list], ds: dt.date) -> pa.Table:
    """``user_sequences`` rows (every action before the cutoff: the serve path reads them all)."""
    users = sorted(timelines)
    rows = {name: [] for name in ("pin_id", "action", "surface", "duration_ms", "ts")}
    for user in users:
        events = sorted(timelines[user], key=lambda e: (e[2], e[1], e[0]))
        rows["pin_id"].append([e[0] for e in events])
        rows["action"].append([e[1] for e in events])
        rows["surface"].append(["homefeed" if i % 2 else None for i in range(len(events))])
        rows["duration_ms"].append([12_000 if e[1] != "save" else None for e in events])
        rows["ts"].append([e[2] for e in events])
    cutoff = dt.datetime.combine(ds + dt.timedelta(days=1), dt.time(), dt.timezone.utc) - dt.timedelta(days=14)
    return pa.table({
        "user_id": pa.array(users, pa.int64()),
        "split": pa.array(user_split(np.asarray(users), 0.1, 0.1).tolist(), pa.string()),
        "cutoff_ts": pa.array([cutoff] * len(users), USER_SEQUENCES.schema.field("cutoff_ts").type),
        **{name: pa.array(values, USER_SEQUENCES.schema.field(name).type) for name, values in rows.items()},
        "num_actions": pa.array([len(timelines[u]) for u in users], pa.int32()),
        "num_input_dropped": pa.array([0] * len(users), pa.int32()),
        "num_future_dropped": pa.array([0] * len(users), pa.int32()),
    })


def pin_vectors(seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(len(PIN_IDS), CONFIG.pin_dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def write_inputs(lake, ds: dt.date, timelines: dict, pinsage_version: str = "pinsage/1") -> None:
    vectors = pin_vectors()
    lake.write(PIN_EMBEDDINGS, pa.table({
        "pin_id": PIN_IDS,
        "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
        "model_version": [pinsage_version] * len(PIN_IDS),
    }), ds)
    lake.write(USER_SEQUENCES, sequences_table(timelines, ds), ds, extra={"users_short": 3})


def register(store, tmp_path, name: str, seed: int, pinsage_version: str | None = "pinsage/1",
             champion: bool = True) -> str:
    """A random-init PinnerFormer registered as the train job does: model dir, logged model, version tags."""
    client, artifacts = store
    torch.manual_seed(seed)
    metadata = {"pinsage_model_version": pinsage_version} if pinsage_version else {}
    path = save_model_dir(tmp_path / f"{name}-{seed}", build_model(CONFIG), metadata)
    with start_run(client, name, run_name=f"seed {seed}", artifact_root=artifacts) as tracked:
        logged = log_model_dir(client, tracked.run_id, path, loader=LOADER, name=name)
    version = register_version(client, name, logged, tags=metadata)
    if champion:
        set_alias(client, name, "champion", version)
    return version


def config(store, lake_uri, name: str, ds: dt.date, **kwargs) -> InferPinnerFormerConfig:
    return InferPinnerFormerConfig(lake_uri=lake_uri, ds=ds, tracking_uri=store[0].tracking_uri,
                                   registered_model=name, device="cpu", batch_size=2, **kwargs)


def user_table(lake, ds) -> dict[int, dict]:
    table = lake.read(PINNERFORMER_USER_EMBEDDINGS, ds)
    return {row["user_id"]: row for row in table.to_pylist()}


def as_matrix(rows: list[dict]) -> np.ndarray:
    return np.asarray([r["embedding"] for r in rows], dtype=np.float32)


def test_writes_both_tables_with_unit_norm_vectors_and_versions(store, lake, lake_uri, tmp_path):
    write_inputs(lake, D1, TIMELINES_D1)
    version = register(store, tmp_path, "pf_write", seed=0)
    result = run(config(store, lake_uri, "pf_write", D1))

    users = user_table(lake, D1)
    assert sorted(users) == [1, 2, 3, 4, 6]  # user 5 has one action
    vectors = as_matrix(list(users.values()))
    assert vectors.shape == (5, 8) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert {(r["model_version"], r["pinsage_model_version"], r["computed_ds"]) for r in users.values()} == \
        {(f"pf_write/{version}", "pinsage/1", D1)}
    pins = lake.read(PINNERFORMER_PIN_EMBEDDINGS, D1).to_pylist()
    assert [r["pin_id"] for r in pins] == PIN_IDS.tolist()
    assert {(r["model_version"], r["pinsage_model_version"]) for r in pins} == {(f"pf_write/{version}", "pinsage/1")}

    stats = result.user_manifest.extra
    assert (stats["users"], stats["users_recomputed"], stats["users_carried_over"], stats["users_short"],
            stats["users_short_upstream"], stats["unknown_pin_events"]) == (5, 5, 0, 1, 3, 1)
    assert [i["table"] for i in result.user_manifest.inputs] == ["user_sequences", "pin_embeddings"]
    assert [i["table"] for i in result.pin_manifest.inputs] == ["pin_embeddings"]

    # The same vectors as the library's embedding of the latest max_length actions, and the pin tower's.
    torch.manual_seed(0)
    model = build_model(CONFIG).eval()
    model.attach_pin_table(torch.from_numpy(pin_vectors()))
    seqs, ids = sequences_from_table(lake.read(USER_SEQUENCES, D1), PIN_IDS, mode="serve",
                                     options=SequenceOptions(max_length=8))
    expected = embed_users(model, seqs)
    assert np.abs(as_matrix([users[u] for u in ids.tolist()]) - expected).max() < 1e-5
    assert seqs.token_lengths[ids.tolist().index(3)] == 8  # user 3's 12 actions are cut to the latest 8
    with torch.no_grad():
        pin_tower = model.embed_pins(torch.arange(len(PIN_IDS))).numpy()
    assert np.abs(as_matrix(pins) - pin_tower).max() < 1e-5

    # A rerun of the same ds (from the command line) writes identical rows.
    main(["--ds", D1.isoformat(), "--lake-uri", lake_uri, "--tracking-uri", store[0].tracking_uri,
          "--registered-model", "pf_write", "--device", "cpu", "--batch-size", "2"])
    assert lake.read(PINNERFORMER_USER_EMBEDDINGS, D1).equals(
        pa.Table.from_pylist(list(users.values()), schema=PINNERFORMER_USER_EMBEDDINGS.schema))
    assert lake.read(PINNERFORMER_PIN_EMBEDDINGS, D1).to_pylist() == pins


def test_refuses_a_pinsage_version_other_than_the_models(store, lake, lake_uri, tmp_path):
    write_inputs(lake, D1, TIMELINES_D1, pinsage_version="pinsage/2")
    register(store, tmp_path, "pf_mismatch", seed=0, pinsage_version="pinsage/1")
    with pytest.raises(VersionMismatchError, match=r"pf_mismatch/1 \(alias 'champion'\) was trained on PinSage "
                                                   r"pinsage/1, but table pin_embeddings \(ds=2026-03-30\).* holds "
                                                   r"pinsage/2; refusing to mix"):
        run(config(store, lake_uri, "pf_mismatch", D1))
    assert not lake.exists(PINNERFORMER_USER_EMBEDDINGS, D1) and not lake.exists(PINNERFORMER_PIN_EMBEDDINGS, D1)

    register(store, tmp_path, "pf_untagged", seed=0, pinsage_version=None)
    with pytest.raises(VersionMismatchError, match=r"'pf_untagged' version 1 .* has no 'pinsage_model_version' tag"):
        run(config(store, lake_uri, "pf_untagged", D1))


def test_no_champion_is_a_clear_error_and_a_challenger_can_be_served_on_request(store, lake, lake_uri, tmp_path):
    write_inputs(lake, D1, TIMELINES_D1)
    register(store, tmp_path, "pf_nochamp", seed=0, champion=False)
    with pytest.raises(ModelVersionNotFound, match=r"'pf_nochamp' has no alias 'champion'.*no champion yet"):
        run(config(store, lake_uri, "pf_nochamp", D1))
    result = run(config(store, lake_uri, "pf_nochamp", D1, alias="challenger"))
    assert result.model_version == "pf_nochamp/1" and result.stats["registered_model"] == "pf_nochamp@challenger"


def test_a_corrupt_champion_is_an_error_naming_the_version(store, lake, lake_uri, tmp_path):
    write_inputs(lake, D1, TIMELINES_D1)
    version = register(store, tmp_path, "pf_corrupt", seed=0)
    artifacts = Path(store[0].get_model_version_download_uri("pf_corrupt", version).removeprefix("file://"))
    (artifacts / "data" / "model.pt").write_bytes(b"not a state dict")
    with pytest.raises(ModelLoadError, match=rf"registered model 'pf_corrupt' version {version}: file model.pt .* "
                                             "is corrupt"):
        run(config(store, lake_uri, "pf_corrupt", D1))
    assert not lake.exists(PINNERFORMER_USER_EMBEDDINGS, D1)


def test_incremental_carries_quiet_users_and_recomputes_the_rest(store, lake, lake_uri, tmp_path):
    write_inputs(lake, D1, TIMELINES_D1)
    write_inputs(lake, D2, TIMELINES_D2)
    first = register(store, tmp_path, "pf_incr", seed=0)
    run(config(store, lake_uri, "pf_incr", D1))
    day1 = user_table(lake, D1)

    result = run(config(store, lake_uri, "pf_incr", D2))
    day2 = user_table(lake, D2)
    assert sorted(day2) == [1, 2, 3, 4, 7]  # 6 left the window, 5 is short
    assert {u: r["computed_ds"] for u, r in day2.items()} == {1: D1, 2: D2, 3: D1, 4: D1, 7: D2}
    for user in (1, 3, 4):  # carried over unchanged
        assert day2[user]["embedding"] == day1[user]["embedding"]
    assert not np.allclose(day2[2]["embedding"], day1[2]["embedding"])  # a new action: recomputed
    stats = result.stats
    assert (stats["users_carried_over"], stats["users_recomputed"], stats["previous_ds"]) == (3, 2, D1.isoformat())
    assert [i["table"] for i in result.user_manifest.inputs] == \
        ["user_sequences", "pin_embeddings", "pinnerformer_user_embeddings"]

    # Carrying over is exact: a full recomputation gives the same vectors for the quiet users.
    full = run(config(store, lake_uri, "pf_incr", D2, incremental=False))
    assert full.stats["users_recomputed"] == 5 and full.stats["previous_ds"] is None
    recomputed = user_table(lake, D2)
    assert np.abs(as_matrix([recomputed[u] for u in (1, 3, 4)]) - as_matrix([day1[u] for u in (1, 3, 4)])).max() < 1e-5

    # Rerunning D2 incrementally gives identical rows (the previous partition is strictly earlier).
    run(config(store, lake_uri, "pf_incr", D2))
    again = lake.read(PINNERFORMER_USER_EMBEDDINGS, D2)
    run(config(store, lake_uri, "pf_incr", D2))
    assert lake.read(PINNERFORMER_USER_EMBEDDINGS, D2).equals(again)
    assert again.to_pylist() == [day2[u] for u in sorted(day2)]

    # A new champion: nobody is carried over.
    second = register(store, tmp_path, "pf_incr", seed=1)
    assert second != first
    result = run(config(store, lake_uri, "pf_incr", D2))
    day2 = user_table(lake, D2)
    assert result.stats["users_carried_over"] == 0 and result.stats["users_recomputed"] == 5
    assert {(r["model_version"], r["computed_ds"]) for r in day2.values()} == {(f"pf_incr/{second}", D2)}


def test_missing_user_sequences_is_an_error_and_leaves_the_output_untouched(store, lake, lake_uri, tmp_path):
    write_inputs(lake, D1, TIMELINES_D1)
    register(store, tmp_path, "pf_missing", seed=0)
    run(config(store, lake_uri, "pf_missing", D1))
    users_before = lake.read_manifest(PINNERFORMER_USER_EMBEDDINGS, D1)
    pins_before = lake.read_manifest(PINNERFORMER_PIN_EMBEDDINGS, D1)

    shutil.rmtree(lake.local_path(USER_SEQUENCES, D1))
    with pytest.raises(PartitionMissingError, match=r"table user_sequences \(ds=2026-03-30\) .* is missing"):
        run(config(store, lake_uri, "pf_missing", D1))
    assert lake.read_manifest(PINNERFORMER_USER_EMBEDDINGS, D1) == users_before
    assert lake.read_manifest(PINNERFORMER_PIN_EMBEDDINGS, D1) == pins_before


def test_vectors_must_be_finite_and_unit_norm():
    good = np.eye(3, dtype=np.float32)
    check_unit_norm(good, np.arange(3), "x", "user_id")
    bad = good.copy()
    bad[1, 0] = np.nan
    bad[2] *= 2
    with pytest.raises(ValueError, match=r"x: 2 vector\(s\) are not finite with unit norm, e.g. user_id \[1, 2\]"):
        check_unit_norm(bad, np.arange(3), "x", "user_id")


def test_config_is_validated():
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        InferPinnerFormerConfig(lake_uri="/tmp/x", ds=D1, tracking_uri="sqlite:///x.db", batch_size=0)
