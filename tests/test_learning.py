"""A guard on learning: a short CPU training on a small synthetic set must beat the untrained model by a
clear margin, so a change that breaks learning (a loss cut off from the graph, labels that do not match
the images, an optimiser that does not step, augmentations that destroy the images) fails CI.

It measures infrared-to-visible retrieval twice: on the training identities (what the network
memorised) and on identities it never saw (what it learned about matching across modalities: the
dye-and-material to near-infrared rule of the synthetic data). A training whose infrared images do not
belong to the visible images' identities (the cross-modal correspondence broken) still learns the
training identities within each modality, and must fail the unseen-identity margin: the test runs that
sabotaged training too. bench/learning.py measures the full tiny recipes.
"""

from __future__ import annotations

import pytest

from tests.learning_guard import SEEN_MARGIN, synthetic_sets, train_and_measure


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    return synthetic_sets(tmp_path_factory)


@pytest.mark.slow
def test_short_training_beats_the_untrained_model(tmp_path, synthetic_set):
    """Tiny DAM (three image blocks a step, the local branch and the hetero-centre losses) learns its training
    identities; tiny AGW's check is part of the unseen-identity guard's paired training
    (tests/test_learning_unseen.py), which measures both from one model."""
    m = train_and_measure(tmp_path, synthetic_set(20, 4), "dam", unseen=False, steps=40)
    print(f"\ndam: infrared->visible mAP of the training identities {m['seen_before']:.1f} -> {m['seen_after']:.1f}")
    assert m["seen_after"] > m["seen_before"] + SEEN_MARGIN, m
