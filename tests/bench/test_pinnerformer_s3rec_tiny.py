"""The S3-Rec section of bench/pinnerformer_quality.py and bench/diagnostics/s3rec_valid.py end to end on tiny
literal files in the published format (the shared data is not read), with and without item attributes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import bench.pinnerformer_quality as quality
from bench.diagnostics import s3rec_valid

FLAGS = ["--dim", "Beauty=16", "LastFM=16", "--epochs", "Beauty=2", "LastFM=2", "--patience", "Beauty=1",
         "LastFM=1", "--threads", "1", "--seeds", "0"]


@pytest.fixture()
def tiny_s3rec(tmp_path, monkeypatch):
    """30 users walking 3 brands of 6 items each; every item carries its brand and one of two categories."""
    rng = np.random.default_rng(0)
    lines = []
    for user in range(1, 31):
        brand = user % 3
        items = [1 + brand * 6 + (int(rng.integers(6)) + step) % 6 for step in range(int(rng.integers(4, 9)))]
        lines.append(" ".join(map(str, [user, *items])))
    (tmp_path / "LastFM.txt").write_text("\n".join(lines) + "\n")
    attributes = {str(item): [100 + (item - 1) // 6, 200 + item % 2] for item in range(1, 19)}
    (tmp_path / "LastFM_item2attributes.json").write_text(json.dumps(attributes))
    monkeypatch.setattr(quality, "DATA", tmp_path)
    threads = torch.get_num_threads()  # the diagnostic sets torch's thread count: put it back after
    yield tmp_path
    torch.set_num_threads(threads)


def test_load_reads_each_items_attributes_in_item_row_order(tiny_s3rec):
    data = quality.load("LastFM")
    assert data.num_attributes == 5  # brands 100-102, categories 200-201
    assert data.attributes.shape == (data.num_items, 2)
    # Item rows follow the sorted item ids; item 1 is brand 100 (row 0) and category 201 (row 4).
    assert data.attributes[0].tolist() == [0, 4]


@pytest.mark.parametrize("attributes, ema", [(["LastFM"], "0"), ([], "0"), ([], "0.9")])
def test_the_valid_diagnostic_trains_the_benchs_model(tiny_s3rec, attributes, ema, capsys):
    result = s3rec_valid.main(["LastFM", *FLAGS, "--ema-decay", f"LastFM={ema}", "--item-attributes", *attributes])
    assert result["item_attributes"] == bool(attributes) and result["ema_decay"] == float(ema)
    assert len(result["valid_hr@10"]) in (1, 2) and 0 <= result["best_valid_hr@10"] <= 1
    # With the weight average the raw weights' curve of the same run is printed beside it.
    assert ("valid_raw_hr@10" in result) == (ema != "0")
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_the_bench_scores_the_model_with_attributes_against_the_baselines(tiny_s3rec):
    args = quality.parse_args([*FLAGS, "--item-attributes", "LastFM"])
    records, summary = quality.bench_dataset("LastFM", args)
    model = records["PinnerFormer (next-item)"]
    assert model["seeds"] == [0] and 0 <= model["HR@10"] <= 1 and 0 <= model["NDCG@10"] <= model["HR@10"]
    assert {"popularity", "item-kNN (last item)", "item-kNN (history)"} <= set(records)
    assert any("bar (plain transformer" in line for line in summary)
