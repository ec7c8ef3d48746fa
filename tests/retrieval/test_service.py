import datetime as dt
import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from embeddings.index.evaluate import GateConfig
from embeddings.pinnersage.retrieval import pull_queries
from embeddings.retrieval.http import make_server
from embeddings.retrieval.service import NotFound, Retriever, VersionRefused
from jobs import serve
from jobs.publish_index import PublishIndexConfig, run
from tests.retrieval.lake_fixture import D1, USERS, build_lake

D2 = D1 + dt.timedelta(days=1)


def wait_for(predicate, timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


@pytest.fixture
def published(tmp_path):
    ids = build_lake(tmp_path)
    retriever = Retriever(str(tmp_path / "idx"), str(tmp_path / "lake"))
    assert retriever.reload()
    return tmp_path, ids, retriever


def test_related_pins_exclude_the_pin_and_match_exact_search(published):
    _, ids, retriever = published
    pin = int(ids["pins"][7])
    response = retriever.related_pins(pin, k=5)
    found = [r["pin_id"] for r in response["results"]]
    assert len(found) == 5 and pin not in found and response["fallback"] is None
    assert response["index_version"] == "pinsage/ds=2026-11-01/run-2026-11-01"
    scores = [r["score"] for r in response["results"]]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(NotFound, match="pin 42 is not in the pinsage index"):
        retriever.related_pins(42)


def test_user_pins_exclude_seen_pins_and_fall_back_for_unknown_users(published):
    _, ids, retriever = published
    response = retriever.user_pins(int(USERS[0]), k=10)
    found = {r["pin_id"] for r in response["results"]}
    assert len(found) == 10 and not found & set(ids["seen"]) and response["excluded_seen"] == 3
    unknown = retriever.user_pins(int(USERS[2]), k=3)
    assert unknown["fallback"] == "popular" and "has no PinnerFormer embedding" in unknown["fallback_reason"]
    assert [r["pin_id"] for r in unknown["results"]] == ids["pins"][:3].tolist()  # the most engaged pins


def test_pinnersage_blends_three_medoids_by_importance(published):
    _, ids, retriever = published
    response = retriever.pinnersage(int(USERS[0]), k=12)
    assert [m["pin_id"] for m in response["medoids"]] == ids["medoids"][:3].tolist()  # rank 4 left out
    found = [r["pin_id"] for r in response["results"]]
    assert len(found) == 12 == len(set(found)) and not set(found) & set(ids["medoids"].tolist())
    # Each medoid's own nearest neighbour is in the blend (every interest is represented).
    for medoid in ids["medoids"][:3]:
        assert retriever.related_pins(int(medoid), k=1)["results"][0]["pin_id"] in found
    assert retriever.pinnersage(int(USERS[1]))["fallback"] == "popular"


def test_pinnersage_pull_moves_the_medoid_queries_toward_the_corpus_direction(published):
    tmp_path, ids, plain = published
    pulled = Retriever(str(tmp_path / "idx"), str(tmp_path / "lake"), pinnersage_pull=0.7)
    assert pulled.reload()
    loaded = pulled.snapshot.indexes["pinsage"]
    vectors = np.stack([loaded.index.reconstruct(int(p)) for p in loaded.sorted_ids])
    np.testing.assert_allclose(loaded.direction, vectors.mean(0) / np.linalg.norm(vectors.mean(0)), atol=1e-5)
    response = pulled.pinnersage(int(USERS[0]), k=12)
    assert response["pull"] == 0.7 and plain.pinnersage(int(USERS[0]), k=12)["pull"] == 0.0
    # each medoid's list is the exact neighbours of its pulled query (the medoids themselves left out)
    medoids = np.array([m["pin_id"] for m in response["medoids"]])
    queries = pull_queries(np.stack([loaded.index.reconstruct(int(p)) for p in medoids]), loaded.direction, 0.7)
    exact = loaded.sorted_ids[np.argsort(-(queries @ vectors.T), axis=1)]
    first = [next(int(p) for p in row if p not in medoids) for row in exact]
    assert set(first) <= {r["pin_id"] for r in response["results"]}
    with pytest.raises(ValueError, match="pinnersage_pull"):
        Retriever(str(tmp_path / "idx"), str(tmp_path / "lake"), pinnersage_pull=-1.0)


def test_an_index_without_a_corpus_direction_is_refused_by_name_when_pulling(published, monkeypatch):
    tmp_path, _, _ = published
    # the fault: the stored vectors average to zero, so there is no direction to pull toward
    monkeypatch.setattr("embeddings.retrieval.service.stored_mean", lambda index: np.zeros(index.d, np.float32))
    pulled = Retriever(str(tmp_path / "idx"), str(tmp_path / "lake"), pinnersage_pull=0.7)
    assert not pulled.reload()
    assert "index version pinsage/ds=2026-11-01/run-2026-11-01" in pulled.last_error
    assert "average to zero" in pulled.last_error


def test_user_vectors_of_another_model_version_are_refused(tmp_path):
    build_lake(tmp_path, user_version="pinnerformer/2", medoid_version="pinsage/9")
    retriever = Retriever(str(tmp_path / "idx"), str(tmp_path / "lake"))
    retriever.reload()
    with pytest.raises(VersionRefused, match="user embeddings of pinnerformer/2 .* pin index .* of pinnerformer/1"):
        retriever.user_pins(int(USERS[0]))
    with pytest.raises(VersionRefused, match="medoids computed on pinsage/9 .* of pinsage/1"):
        retriever.pinnersage(int(USERS[0]))
    assert retriever.related_pins(int(retriever.snapshot.indexes["pinsage"].sorted_ids[0]))["results"]


def test_a_tampered_new_version_is_refused_and_the_previous_keeps_serving(published):
    tmp_path, ids, retriever = published
    build_lake(tmp_path, ds=D2, seed=1, publish=False)
    _publish(tmp_path, D2)
    index_file = tmp_path / "idx" / "pinsage" / "ds=2026-11-02" / "run-2026-11-02" / "index.faiss"
    data = bytearray(index_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    index_file.write_bytes(bytes(data))
    assert not retriever.reload()
    assert "ChecksumMismatch" in retriever.health()["last_error"]
    assert retriever.snapshot.versions["pinsage"] == "ds=2026-11-01/run-2026-11-01"
    assert retriever.related_pins(int(ids["pins"][0]))["results"]


def _publish(tmp_path, ds):
    run(PublishIndexConfig(ds=ds, lake_uri=str(tmp_path / "lake"), index_uri=str(tmp_path / "idx"), m=8,
                           ef_construction=32, gate=GateConfig(num_queries=200, min_qps=1), run_id=f"run-{ds}"))


@pytest.mark.slow
def test_http_hot_reload_under_load_drops_no_request(published):
    tmp_path, ids, retriever = published
    server = make_server(retriever, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    retriever.watch(interval_s=0.05)
    failures, statuses, stop = [], [], threading.Event()
    # Pins of both days (seed 0 and 1 draw from the same id range) and users: every answer must be 200/404.
    pins = ids["pins"][:50].tolist()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            path = [f"/related_pins?pin_id={pins[i % len(pins)]}", f"/user_pins?user_id={USERS[i % 3]}",
                    f"/pinnersage?user_id={USERS[i % 2]}"][(i + n) % 3]
            i += 1
            try:
                with urllib.request.urlopen(base + path, timeout=10) as r:
                    statuses.append(r.status)
                    json.loads(r.read())
            except urllib.error.HTTPError as e:
                (statuses if e.code == 404 else failures).append(e.code)
            except Exception as e:  # a dropped connection or a timeout
                failures.append(repr(e))

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for c in clients:
        c.start()
    try:
        build_lake(tmp_path, ds=D2, seed=1, publish=False)
        _publish(tmp_path, D2)
        new = {"pinsage": "ds=2026-11-02/run-2026-11-02", "pinnerformer": "ds=2026-11-02/run-2026-11-02"}
        assert wait_for(lambda: retriever.snapshot.versions == new, 30)
        assert wait_for(lambda: len(statuses) > 200, 30)
    finally:
        stop.set()
        for c in clients:
            c.join()
        retriever.stop()
        server.shutdown()
    assert not failures, failures[:5]
    assert retriever.reloads >= 2 and retriever.health()["last_error"] is None


def test_http_statuses(published):
    _, ids, retriever = published
    server = make_server(retriever, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        ok = json.loads(urllib.request.urlopen(f"{base}/related_pins?pin_id={ids['pins'][0]}&k=3").read())
        assert len(ok["results"]) == 3
        for path, status, message in [("/related_pins?pin_id=42", 404, "not in the pinsage index"),
                                      ("/related_pins?pin_id=abc", 400, "must be integers"),
                                      ("/user_pins", 400, "needs the parameter user_id"),
                                      ("/nope", 404, "no route")]:
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + path)
            assert err.value.code == status and message in json.loads(err.value.read())["error"]
        assert json.loads(urllib.request.urlopen(base + "/health").read())["ok"]
    finally:
        server.shutdown()


def test_cli_prints_results_with_pin_text(published, capsys):
    tmp_path, ids, _ = published
    common = ["--index-uri", str(tmp_path / "idx"), "--lake-uri", str(tmp_path / "lake")]
    serve.main([*common, "related", "--pin-id", str(ids["pins"][0]), "--k", "3"])
    out = capsys.readouterr().out
    assert f"query pin: pin text {ids['pins'][0]}" in out and out.count("pin text") == 4
    serve.main([*common, "user", "--user-id", str(USERS[2])])
    assert "FALLBACK popular: user 1000000003 has no PinnerFormer embedding" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="NotFound: pin 42"):
        serve.main([*common, "related", "--pin-id", "42"])
