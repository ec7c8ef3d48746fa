"""Champion/challenger: a new version serves only if it beats the champion by more than noise.

Every new version gets the alias ``challenger``. It takes ``champion`` only if, on the same evaluation
(same protocol, same users, same metric), the paired bootstrap over users of ``challenger - champion``
has its confidence interval (95% by default) entirely above ``margin`` (0 by default: "better beyond
noise"; a positive margin in metric units asks for a practically meaningful gain). So serving does not
flip nightly on noise. The first version of a model has no incumbent and becomes champion.

The comparison and the decision are written as tags on the challenger version (``promotion.*``), and a
replaced champion gets ``promotion.replaced_by``. Registry stages are never used.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from embeddings.eval.bootstrap import paired_bootstrap
from embeddings.registry.models import CHALLENGER, CHAMPION, is_not_found, resolve_version, set_alias

log = logging.getLogger(__name__)

TAG_PREFIX = "promotion."


@dataclass(frozen=True)
class Decision:
    """The outcome of ``promote_if_better``.

    Attributes:
        name, version: the registered model and the challenger version.
        promoted: whether the version is the champion after the decision.
        reason: why, in words.
        incumbent: the champion version before the decision (None if there was none).
        metric, protocol: what was compared, and how it was measured.
        mean_diff, ci_low, ci_high: the paired bootstrap of challenger - champion (None without incumbent).
        margin, confidence, num_users, num_samples, seed: the rule's settings and sample.
    """

    name: str
    version: str
    promoted: bool
    reason: str
    incumbent: str | None
    metric: str
    protocol: str
    mean_diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    margin: float = 0.0
    confidence: float = 0.95
    num_users: int = 0
    num_samples: int = 0
    seed: int = 0

    def tags(self) -> dict[str, str]:
        """The decision as ``promotion.*`` version tags (absent values are left out)."""
        values = {
            "decision": "promoted" if self.promoted else "kept_challenger",
            "reason": self.reason,
            "incumbent": self.incumbent,
            "metric": self.metric,
            "protocol": self.protocol,
            "mean_diff": self.mean_diff,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "margin": self.margin,
            "confidence": self.confidence,
            "num_users": self.num_users,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "decided_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        return {f"{TAG_PREFIX}{k}": (f"{v:.6g}" if isinstance(v, float) else str(v))
                for k, v in values.items() if v is not None and v != ""}


def champion_version(client: MlflowClient, name: str) -> str | None:
    """The version that has the ``champion`` alias, or None (no champion yet, or no such model)."""
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise
    return str(aliases[CHAMPION]) if CHAMPION in aliases else None


def promote_if_better(
    client: MlflowClient,
    name: str,
    version: str,
    challenger_per_user: np.ndarray | None,
    champion_per_user: np.ndarray | None,
    *,
    margin: float = 0.0,
    metric: str,
    protocol: str,
    num_samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Decision:
    """Give ``version`` the ``challenger`` alias, and ``champion`` if it beats the incumbent beyond noise.

    Args:
        client: the registry client.
        name: the registered model.
        version: the new version (from ``register_version``).
        challenger_per_user: (n,) per-user ``metric`` of the new version.
        champion_per_user: (n,) the same for the current champion, on the same users in the same order
            (``embeddings.eval.bootstrap.paired_values`` aligns two results); ignored without a champion.
        margin: the interval's lower end must exceed this (metric units; 0 = beyond noise).
        metric: the metric compared (e.g. ``"ndcg@10"``); recorded.
        protocol: the evaluation protocol both were measured under; recorded.
        num_samples, seed, confidence: the paired bootstrap's settings.

    Returns:
        The decision (also written as ``promotion.*`` tags on the version).

    Raises:
        ValueError: a champion exists but no comparable per-user metrics were given, or a negative margin.
        ModelVersionNotFound: ``version`` does not exist.
    """
    version = str(version)
    if margin < 0:
        raise ValueError(f"margin must be >= 0 (metric units), got {margin}")
    resolve_version(client, name, version=version)
    set_alias(client, name, CHALLENGER, version)
    incumbent = champion_version(client, name)
    common = dict(name=name, version=version, incumbent=incumbent, metric=metric, protocol=protocol,
                  margin=float(margin), confidence=confidence, num_samples=num_samples, seed=seed)
    if incumbent is None:
        n = 0 if challenger_per_user is None else len(challenger_per_user)
        decision = Decision(promoted=True, reason="no incumbent champion", num_users=n, **common)
    elif incumbent == version:  # a retried task: keep the tags of the comparison that promoted it
        decision = Decision(promoted=True, reason="already the champion", **common)
        log.info("%s version %s is already the champion; nothing to decide", name, version)
        return decision
    else:
        if challenger_per_user is None or champion_per_user is None:
            raise ValueError(f"{name} has champion version {incumbent}: promoting version {version} needs both "
                             f"versions' per-user {metric or 'metric'} on the same evaluation")
        diff, low, high = paired_bootstrap(challenger_per_user, champion_per_user, num_samples=num_samples,
                                           seed=seed, confidence=confidence)
        promoted = low > margin
        interval = f"{confidence:.0%} interval of the per-user difference [{low:.4g}, {high:.4g}]"
        reason = (f"beats champion v{incumbent}: {interval} lies above {margin:g}" if promoted else
                  f"not better than champion v{incumbent} beyond noise: {interval} does not lie above {margin:g}")
        decision = Decision(promoted=promoted, reason=reason, mean_diff=diff, ci_low=low, ci_high=high,
                            num_users=len(np.asarray(challenger_per_user)), **common)
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, version, key, value)
    if decision.promoted and incumbent != version:
        set_alias(client, name, CHAMPION, version)
        if incumbent is not None:
            client.set_model_version_tag(name, incumbent, f"{TAG_PREFIX}replaced_by", version)
    log.info("%s version %s: %s (%s)", name, version, "champion" if decision.promoted else "challenger",
             decision.reason)
    return decision
