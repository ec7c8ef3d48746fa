"""Champion/challenger on a real MLflow store: promote only beyond noise, and record why."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.registry.models import CHALLENGER, CHAMPION, ModelVersionNotFound, log_model_dir, register_version
from embeddings.registry.promotion import Decision, champion_version, promote_if_better
from embeddings.registry.tracking import start_run
from tests.registry.mlflow_store import store  # noqa: F401 - the fixture

PROTOCOL = "user next-save | full ranking over all pins, seen masked | per-user split test | ties pessimistic"
METRIC = "ndcg@10"


def _register(store, tmp_path, name, tag):
    client, artifacts = store
    model_dir = tmp_path / f"model-{tag}"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(tag.encode())
    with start_run(client, name, artifact_root=artifacts) as run:
        logged = log_model_dir(client, run.run_id, model_dir, loader="embeddings.registry.models:load_state_dict_dir")
    return register_version(client, name, logged)


def _aliases(client, name):
    return dict(client.get_registered_model(name).aliases)


def _per_user(seed=0, n=2000):
    """A champion's per-user hits, a challenger equal up to symmetric noise, and a clearly better one."""
    rng = np.random.default_rng(seed)
    champion = (rng.random(n) < 0.3).astype(float)
    noisy = champion.copy()  # 30 users gained, 30 lost: the same mean, different users
    noisy[rng.choice(np.flatnonzero(champion == 0), size=30, replace=False)] = 1.0
    noisy[rng.choice(np.flatnonzero(champion == 1), size=30, replace=False)] = 0.0
    better = champion.copy()
    better[rng.choice(np.flatnonzero(champion == 0), size=300, replace=False)] = 1.0
    return champion, noisy, better


@pytest.mark.mlflow
def test_champion_challenger_lifecycle(store, tmp_path):
    client, _ = store
    name = "lifecycle"
    champion, noisy, better = _per_user()

    v1 = _register(store, tmp_path, name, "v1")
    first = promote_if_better(client, name, v1, champion, None, metric=METRIC, protocol=PROTOCOL)
    assert first.promoted and first.reason == "no incumbent champion" and first.incumbent is None
    assert _aliases(client, name) == {CHAMPION: 1, CHALLENGER: 1}
    assert client.get_model_version(name, v1).tags["promotion.decision"] == "promoted"

    v2 = _register(store, tmp_path, name, "v2")
    assert _aliases(client, name) == {CHAMPION: 1, CHALLENGER: 2}  # registering makes it the challenger
    noise = promote_if_better(client, name, v2, noisy, champion, metric=METRIC, protocol=PROTOCOL)
    assert not noise.promoted and noise.ci_low <= 0 <= noise.ci_high
    assert noise.reason.startswith("not better than champion v1 beyond noise")
    assert _aliases(client, name) == {CHAMPION: 1, CHALLENGER: 2}
    tags = client.get_model_version(name, v2).tags
    assert tags["promotion.decision"] == "kept_challenger" and tags["promotion.incumbent"] == "1"
    assert tags["promotion.protocol"] == PROTOCOL and tags["promotion.metric"] == METRIC
    assert float(tags["promotion.ci_low"]) == pytest.approx(noise.ci_low, rel=1e-5)
    assert float(tags["promotion.mean_diff"]) == pytest.approx(noise.mean_diff, rel=1e-5, abs=1e-9)
    assert tags["promotion.num_users"] == "2000" and tags["promotion.num_samples"] == "1000"

    v3 = _register(store, tmp_path, name, "v3")
    win = promote_if_better(client, name, v3, better, champion, metric=METRIC, protocol=PROTOCOL)
    assert win.promoted and win.ci_low > 0 and win.mean_diff == pytest.approx(300 / 2000)
    assert win.reason.startswith("beats champion v1")
    assert _aliases(client, name) == {CHAMPION: 3, CHALLENGER: 3}
    assert client.get_model_version(name, v3).tags["promotion.decision"] == "promoted"
    assert client.get_model_version(name, v1).tags["promotion.replaced_by"] == "3"
    assert champion_version(client, name) == "3"

    # A retried task asks again for the version that is already champion: nothing changes.
    again = promote_if_better(client, name, v3, better, champion, metric=METRIC, protocol=PROTOCOL)
    assert again.promoted and again.reason == "already the champion"
    assert client.get_model_version(name, v3).tags["promotion.reason"] == win.reason


@pytest.mark.mlflow
def test_a_margin_asks_for_more_than_significance(store, tmp_path):
    client, _ = store
    name = "margin"
    champion, _, better = _per_user(seed=1)
    promote_if_better(client, name, _register(store, tmp_path, name, "a"), champion, None, metric=METRIC,
                      protocol=PROTOCOL)
    v2 = _register(store, tmp_path, name, "b")
    decision = promote_if_better(client, name, v2, better, champion, margin=0.2, metric=METRIC, protocol=PROTOCOL)
    assert not decision.promoted and decision.ci_low > 0  # significant, but not by 0.2
    assert client.get_model_version(name, v2).tags["promotion.margin"] == "0.2"
    assert champion_version(client, name) == "1"


@pytest.mark.mlflow
def test_bad_requests(store, tmp_path):
    client, _ = store
    name = "bad"
    champion, _, better = _per_user(seed=2)
    promote_if_better(client, name, _register(store, tmp_path, name, "a"), champion, None, metric=METRIC,
                      protocol=PROTOCOL)
    v2 = _register(store, tmp_path, name, "b")
    with pytest.raises(ValueError, match="bad has champion version 1: promoting version 2 needs both versions' "
                                         "per-user ndcg@10"):
        promote_if_better(client, name, v2, better, None, metric=METRIC, protocol=PROTOCOL)
    with pytest.raises(ValueError, match="needs the same users in both arrays"):
        promote_if_better(client, name, v2, better[:10], champion, metric=METRIC, protocol=PROTOCOL)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        promote_if_better(client, name, v2, better, champion, margin=-1, metric=METRIC, protocol=PROTOCOL)
    with pytest.raises(ModelVersionNotFound, match="registered model 'bad' has no version 7"):
        promote_if_better(client, name, "7", better, champion, metric=METRIC, protocol=PROTOCOL)
    assert champion_version(client, name) == "1"
    assert champion_version(client, "never-registered") is None


def test_decision_tags_leave_out_what_is_unknown():
    tags = Decision(name="m", version="1", promoted=True, reason="no incumbent champion", incumbent=None,
                    metric=METRIC, protocol=PROTOCOL).tags()
    assert tags["promotion.decision"] == "promoted"
    assert "promotion.incumbent" not in tags and "promotion.ci_low" not in tags
    assert tags["promotion.protocol"] == PROTOCOL and "promotion.decided_at" in tags
