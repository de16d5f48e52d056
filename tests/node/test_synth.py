import numpy as np
import pytest

from node.features import HashedNgramFeaturizer
from node.pairs import eval_pairs, pairs_from_records
from node.synth import TextGroup, load_text_pool, planted_rule, rule_accuracy, split_pool, synth_records


def small_pool(n=40):
    words = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega".split()
    rng = np.random.default_rng(0)
    groups = []
    for i in range(n):
        reps = tuple(" ".join(rng.choice(words, size=int(rng.integers(3, 30)))) + ("\n- item 2" if j % 2 else "") + f" {i}-{j}"
                     for j in range(3))
        groups.append(TextGroup(f"prompt number {i}?", reps))
    return groups


def test_pure_and_shaped():
    pool = small_pool()
    a = synth_records(20, 3, rule_seed=1, community_seed=2, texts=pool)
    b = synth_records(20, 3, rule_seed=1, community_seed=2, texts=pool)
    assert [(r.key, r.feedback[0].data["outcome"]) for r in a] == [(r.key, r.feedback[0].data["outcome"]) for r in b]
    assert len(a) == 60 and len({r.feedback[0].contributor for r in a}) == 20
    for r in a:
        r.validate()
        assert r.source == "synth" and r.owner == r.feedback[0].contributor
    assert len(pairs_from_records(a)) == 60


@pytest.mark.parametrize("featurizer", [None, HashedNgramFeaturizer(dim=64)])
def test_labels_follow_planted_rule_with_noise(featurizer):
    pool = small_pool()
    noisy = synth_records(100, 10, 3, 4, pool, noise=0.5, featurizer=featurizer)
    clean = synth_records(100, 10, 3, 4, pool, noise=0.5, label="rule", featurizer=featurizer)
    rule = planted_rule(pool, 3, 4, noise=0.5, featurizer=featurizer)
    agree = [(rule.utility([r.responses[0].text])[0] > rule.utility([r.responses[1].text])[0]) == (r.feedback[0].data["outcome"] == "a")
             for r in noisy]
    assert 0.6 < np.mean(agree) < 0.98  # follows the rule, with label noise
    u = rule.utility([t for r in clean for t in (r.responses[0].text, r.responses[1].text)]).reshape(-1, 2)
    assert rule_accuracy(list(u[:, 0] > u[:, 1]), clean) == 1.0
    assert rule_accuracy([True] * len(clean), clean) < 0.8


def test_communities_differ_but_share_a_component():
    pool = small_pool()
    u1 = planted_rule(pool, 1, 1).utility([t for g in pool for t in g.responses])
    u2 = planted_rule(pool, 1, 2).utility([t for g in pool for t in g.responses])
    u3 = planted_rule(pool, 2, 1).utility([t for g in pool for t in g.responses])
    c12, c13 = np.corrcoef(u1, u2)[0, 1], np.corrcoef(u1, u3)[0, 1]
    assert c12 < 0.999 and c12 > c13


def test_shared_pool_and_split():
    pool = load_text_pool()
    if not pool:
        pytest.skip("no shared data or fixtures here")
    assert all(len(set(g.responses)) >= 2 for g in pool)
    tr, te = split_pool(pool)
    assert tr and te and not ({g.prompt for g in tr} & {g.prompt for g in te})
    recs = synth_records(5, 2, 0, 0, te, label="rule", lexicon_texts=pool)
    assert len(eval_pairs(recs)) == len(recs)
