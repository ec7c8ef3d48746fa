from __future__ import annotations

import numpy as np
import pytest

from embeddings.data.features import TextHasher, content_features

TEXTS = ["red leather shoes", "red leather boots", "deep blue ocean waves", "", "blue ocean surf"]


def test_deterministic_fixed_dim_unit_rows():
    a = content_features(np.arange(5), TEXTS, text_dim=64)
    b = content_features(np.arange(5), list(TEXTS), text_dim=64)
    assert a.shape == (5, 64) and a.dtype == np.float32
    assert a.tobytes() == b.tobytes()
    norms = np.linalg.norm(a, axis=1)
    np.testing.assert_allclose(norms[[0, 1, 2, 4]], 1.0, atol=1e-5)
    assert norms[3] == 0.0  # empty text


def test_similar_texts_are_closer():
    x = content_features(np.arange(5), TEXTS, text_dim=256)
    assert x[0] @ x[1] > x[0] @ x[2]
    assert x[2] @ x[4] > x[2] @ x[1]


def test_idf_downweights_a_word_in_every_document():
    hasher = TextHasher(text_dim=1024, char_weight=0.0)
    x = hasher.transform(["common alpha", "common beta", "common gamma"])
    common = hasher.counts(["common"]).indices[0]
    rare = hasher.counts(["alpha"]).indices[0]
    assert x[0, common] < x[0, rare]


def test_user_features_are_concatenated_and_checked():
    x = content_features(np.array([1, 2]), ["a b", "c d"], [[3.0, 4.0], None], text_dim=16)
    assert x.shape == (2, 18)
    np.testing.assert_allclose(x[0, 16:], [0.6, 0.8], atol=1e-6)
    assert (x[1, 16:] == 0).all()
    with pytest.raises(ValueError, match=r"NaN/Inf values for 1 pin\(s\), e.g. pin_id \[2\]"):
        content_features(np.array([1, 2]), ["a", "b"], [[1.0], [float("nan")]], text_dim=8)
    with pytest.raises(ValueError, match=r"must all have one length, found lengths \[1, 2\]"):
        content_features(np.array([1, 2]), ["a", "b"], [[1.0], [1.0, 2.0]], text_dim=8)
