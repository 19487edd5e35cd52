"""kNN classifier on toy feature sets whose answers are known, and against DINO's formulation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mixmim.evaluate import knn_accuracy, knn_scores, topk_correct


def unit(*rows: list[float]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_each_query_takes_the_label_of_its_cluster():
    centres = torch.eye(4)  # 4 classes on orthogonal axes
    gen = torch.Generator().manual_seed(0)
    train = centres.repeat_interleave(5, 0) + 0.1 * torch.randn(20, 4, generator=gen)
    train_labels = torch.arange(4).repeat_interleave(5)
    val = centres * 3.0 + 0.1 * torch.randn(4, 4, generator=gen)  # scale does not matter: cosine
    val_labels = torch.tensor([0, 1, 2, 3])
    assert knn_accuracy(train, train_labels, val, val_labels, num_classes=4, k=5) == {"top1": 100.0, "top5": 100.0}
    wrong = torch.tensor([1, 2, 3, 0])
    assert knn_accuracy(train, train_labels, val, wrong, num_classes=4, k=5)["top1"] == 0.0


def test_votes_are_weighted_by_exp_similarity_over_temperature():
    # one very similar neighbour of class 0 against two far ones of class 1: the temperature decides
    train = unit([1.0, 0.0], [0.5, math.sqrt(0.75)], [0.5, -math.sqrt(0.75)])  # cosines 1.0, 0.5, 0.5
    labels = torch.tensor([0, 1, 1])
    query = unit([1.0, 0.0])
    sharp = knn_scores(train, labels, query, num_classes=2, k=3, temperature=0.07)
    assert sharp[0, 0] == pytest.approx(math.exp(1 / 0.07), rel=1e-5)
    assert sharp[0, 1] == pytest.approx(2 * math.exp(0.5 / 0.07), rel=1e-5)
    assert sharp.argmax(1).item() == 0  # e^14.3 > 2 e^7.1
    flat = knn_scores(train, labels, query, num_classes=2, k=3, temperature=100.0)
    assert flat.argmax(1).item() == 1  # almost a plain majority vote: two against one


def test_only_the_k_nearest_vote():
    train = unit([1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 0.9])
    labels = torch.tensor([0, 0, 1, 1, 1])
    query = unit([1.0, 0.05])
    scores = knn_scores(train, labels, query, num_classes=2, k=2, temperature=0.07)
    assert scores[0, 1] == 0 and scores[0, 0] > 0  # class 1 has 3 members but none among the 2 nearest
    assert knn_scores(train, labels, query, num_classes=2, k=50).shape == (1, 2)  # k capped at N


def test_matches_dino_knn_classifier_on_random_features():
    gen = torch.Generator().manual_seed(1)
    train = F.normalize(torch.randn(200, 16, generator=gen), dim=1)
    train_labels = torch.randint(0, 7, (200,), generator=gen)
    query = F.normalize(torch.randn(50, 16, generator=gen), dim=1)
    k, t = 20, 0.07
    # DINO eval_knn.py: one-hot of the neighbours' labels, times exp(sim / T), summed over neighbours
    sim, idx = (query @ train.T).topk(k, dim=1)
    one_hot = F.one_hot(train_labels[idx], 7).float()  # [Q, k, C]
    expected = (one_hot * (sim / t).exp()[..., None]).sum(1)
    got = knn_scores(train, train_labels, query, num_classes=7, k=k, temperature=t, chunk_size=16)
    torch.testing.assert_close(got, expected)


def test_topk_correct_counts_and_caps_k_at_the_class_count():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 1, 0])
    assert topk_correct(scores, labels, (1, 2, 5)) == [1, 2, 3]
