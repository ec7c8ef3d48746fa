"""Content features: a deterministic vector per pin from its text, plus user-supplied features.

No model is downloaded. Text is hashed (MurmurHash3 via scikit-learn's HashingVectorizer, stable across
machines and runs) into ``text_dim`` buckets from word unigrams and bigrams and character 3-5-grams inside
word boundaries; bucket counts are sublinear-TF weighted by IDF computed over the corpus being embedded,
then L2-normalized. When pins carry a ``features`` vector (their own image/text embeddings), it is
L2-normalized and concatenated; pins without one get zeros there. These features are PinSage's input,
which is what makes the model inductive (it embeds pins it never saw in training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

DEFAULT_TEXT_DIM = 256


@dataclass(frozen=True)
class TextHasher:
    """Hashes text into a fixed number of buckets; IDF is fitted on the corpus passed to ``transform``."""

    text_dim: int = DEFAULT_TEXT_DIM
    char_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.text_dim <= 0:
            raise ValueError(f"text_dim must be positive, got {self.text_dim}")

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """(N, text_dim) sparse bucket counts of word 1-2-grams plus weighted char 3-5-grams."""
        words = HashingVectorizer(
            n_features=self.text_dim, analyzer="word", ngram_range=(1, 2), alternate_sign=False,
            norm=None, lowercase=True, token_pattern=r"(?u)\b\w+\b", dtype=np.float32,
        ).transform(texts)
        chars = HashingVectorizer(
            n_features=self.text_dim, analyzer="char_wb", ngram_range=(3, 5), alternate_sign=False,
            norm=None, lowercase=True, dtype=np.float32,
        ).transform(texts)
        return (words + self.char_weight * chars).tocsr()

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) texts -> (N, text_dim) float32, rows unit-norm (all-zero for empty text)."""
        counts = self.counts(texts)
        n = counts.shape[0]
        df = np.bincount(counts.indices, minlength=self.text_dim).astype(np.float64)
        idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
        tf = counts.copy()
        tf.data = 1.0 + np.log(tf.data)  # sublinear TF (all counts are > 0)
        weighted = tf.multiply(idf[None, :].astype(np.float32)).tocsr()
        dense = weighted.toarray().astype(np.float32)
        return l2_normalize(dense)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalization; all-zero rows stay zero. (N, D) -> (N, D)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32)


def stack_user_features(pin_ids: np.ndarray, features: Sequence[Sequence[float] | None]) -> np.ndarray | None:
    """Stack optional per-pin vectors into (N, F), zeros where absent; None when no pin has one.

    Raises:
        ValueError: vectors of different lengths, or NaN/Inf values (naming up to 10 pin ids).
    """
    present = [i for i, f in enumerate(features) if f is not None]
    if not present:
        return None
    lengths = {len(features[i]) for i in present}
    if len(lengths) != 1:
        raise ValueError(f"pins.features must all have one length, found lengths {sorted(lengths)}")
    dim = lengths.pop()
    out = np.zeros((len(features), dim), dtype=np.float32)
    out[present] = np.asarray([features[i] for i in present], dtype=np.float32)
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        ids = np.asarray(pin_ids)[bad][:10].tolist()
        raise ValueError(f"pins.features has NaN/Inf values for {int(bad.sum())} pin(s), e.g. pin_id {ids}")
    return l2_normalize(out)


def content_features(
    pin_ids: np.ndarray,
    texts: Sequence[str],
    user_features: Sequence[Sequence[float] | None] | None = None,
    text_dim: int = DEFAULT_TEXT_DIM,
) -> np.ndarray:
    """The content feature matrix for a corpus of pins.

    Args:
        pin_ids: (N,) int64, used only to name bad rows in errors.
        texts: (N,) pin texts.
        user_features: optional (N,) vectors (or None per pin) to concatenate.
        text_dim: hashed text dimension.

    Returns:
        (N, text_dim [+ F]) float32.
    """
    text = TextHasher(text_dim=text_dim).transform(list(texts))
    extra = stack_user_features(pin_ids, user_features) if user_features is not None else None
    return text if extra is None else np.hstack([text, extra])
