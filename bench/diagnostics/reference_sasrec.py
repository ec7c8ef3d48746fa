"""The issue's reference: a plain SASRec, scored by the project's evaluation code (a diagnostic, not a product).

    .venv/bin/python bench/diagnostics/reference_sasrec.py Beauty 2 1500 0   # dataset, torch threads, training budget (s), seed

Item-id embeddings (Xavier-normal, scaled by sqrt(d)) plus learned positions, left padding to 50, two pre-norm
``nn.TransformerEncoderLayer`` (1 head, d=64, feed-forward 64, dropout 0.3), a final LayerNorm, logits = dot
product with the same item table, full-softmax cross-entropy at every position, Adam 1e-3 (0.9, 0.98), batch
128; VALID HR@10 after each epoch, the best epoch's weights scored on TEST once. Leave-one-out and full ranking
with the history masked (``bench/pinnerformer_quality.py``'s split and scorer, dot product instead of cosine).
It exists to show what the project's model must reach on the same data and code path (docs/PINNERFORMER.md);
it records nothing, and `make bench` (which runs bench/*.py) does not run it.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.pinnerformer_quality import load, protocol_for  # noqa: E402
from embeddings.eval.protocols import Sequences, UserTargets, evaluate_users  # noqa: E402

MAX_LENGTH, DIM, DROPOUT, LR, BATCH = 50, 64, 0.3, 1e-3, 128


def left_padded(seqs: Sequences, length: int) -> torch.Tensor:
    """(U, length) int64: each user's latest items as row + 1, left-padded with 0."""
    out = np.zeros((seqs.num_users, length), dtype=np.int64)
    for u in range(seqs.num_users):
        items = seqs.items[seqs.ptr[u]:seqs.ptr[u + 1]][-length:] + 1
        out[u, length - len(items):] = items
    return torch.from_numpy(out)


class DotScorer:
    """``users[rows] @ items.T`` (the model's own score, not cosine)."""

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        self.users, self.items, self.num_items = users, items, len(items)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return self.users[rows] @ self.items.T


class SASRec(nn.Module):
    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.item = nn.Embedding(num_items + 1, DIM, padding_idx=0)
        self.position = nn.Embedding(MAX_LENGTH, DIM)
        self.drop = nn.Dropout(DROPOUT)
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(DIM, 1, DIM, DROPOUT, batch_first=True, norm_first=True)
                                    for _ in range(2))
        self.norm = nn.LayerNorm(DIM)
        for param in self.parameters():
            if param.dim() > 1:
                nn.init.xavier_normal_(param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        real = (x > 0).unsqueeze(-1)
        h = self.drop(self.item(x) * DIM ** 0.5 + self.position.weight) * real
        causal = torch.triu(torch.ones(MAX_LENGTH, MAX_LENGTH, dtype=torch.bool), 1)
        for layer in self.layers:
            h = layer(h, src_mask=causal) * real
        return self.norm(h)


def evaluate(model: SASRec, targets: UserTargets, which: str):
    model.eval()
    x = left_padded(targets.history, MAX_LENGTH)
    with torch.no_grad():
        users = np.concatenate([model(x[i:i + 1024])[:, -1].numpy() for i in range(0, len(x), 1024)])
        items = model.item.weight[1:].numpy()
    model.train()
    return evaluate_users(DotScorer(users, items), targets, protocol_for(which))


def main(name: str = "Beauty", threads: int = 2, budget_s: float = 1800.0, seed: int = 0) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    split = load(name).split
    checkpoint = REPO / "var" / "bench" / f"reference_sasrec_{name}_seed{seed}.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    train = left_padded(split.train, MAX_LENGTH + 1)
    train = train[(train > 0).sum(dim=1) >= 2]
    model = SASRec(split.train.num_items)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.98))
    start, best, best_epoch, epoch = time.time(), -1.0, 0, 0
    while time.time() - start < budget_s:
        epoch += 1
        total = 0.0
        for batch in train[torch.randperm(len(train))].split(BATCH):
            x, y = batch[:, :-1], batch[:, 1:]
            keep = (x > 0) & (y > 0)
            loss = F.cross_entropy(model(x)[keep] @ model.item.weight[1:].T, y[keep] - 1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        valid = evaluate(model, split.valid, "valid")
        hr = valid.metric("hr@10").mean()
        print(f"epoch {epoch} loss {total / len(train):.3f} VALID hr@10 {hr:.4f} ndcg@10 "
              f"{valid.metric('ndcg@10').mean():.4f} ({time.time() - start:.0f} s)", flush=True)
        if hr > best:
            best, best_epoch = hr, epoch
            torch.save(model.state_dict(), checkpoint)
    model.load_state_dict(torch.load(checkpoint))
    test = evaluate(model, split.test, "test")
    print(f"best epoch {best_epoch}: TEST hr@10 {test.metric('hr@10').mean():.4f} "
          f"ndcg@10 {test.metric('ndcg@10').mean():.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Beauty", int(sys.argv[2]) if len(sys.argv) > 2 else 2,
         float(sys.argv[3]) if len(sys.argv) > 3 else 1800.0, int(sys.argv[4]) if len(sys.argv) > 4 else 0)
