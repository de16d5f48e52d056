from pathlib import Path

import numpy as np
import pytest

from model.features import HashedNgramFeaturizer
from node.pairs import eval_pairs, pairs_from_records
from node.synth import SynthError, TextGroup, load_text_pool, planted_rule, rule_accuracy, split_pool, synth_records


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


def test_arena_battles_follow_planted_strengths():
    from node.synth import ARENA_BOTH_BAD, ARENA_TIE, arena_battles, arena_models

    strengths = arena_models(4, seed=3)
    assert strengths == arena_models(4, seed=3) and strengths != arena_models(4, seed=4)
    battles = arena_battles(4000, strengths, seed=1)
    assert battles == arena_battles(4000, strengths, seed=1)
    assert all(a < b for _, a, b, _ in battles) and 3.0 < len(battles) / 4000 < 5.0  # ~4 battles each
    outcomes = np.array([o for *_, o in battles])
    n = len(outcomes)
    for share, name in ((ARENA_TIE, "tie"), (ARENA_BOTH_BAD, "both_bad")):
        assert abs((outcomes == name).mean() - share) < 5 * np.sqrt(share * (1 - share) / n)
    # among decided battles of each pair, a wins with probability sigmoid(s_a - s_b)
    for (a, b) in {(a, b) for _, a, b, _ in battles}:
        dec = [o for _, x, y, o in battles if (x, y) == (a, b) and o in ("a", "b")]
        p = 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
        assert abs(np.mean([o == "a" for o in dec]) - p) < 5 * np.sqrt(p * (1 - p) / len(dec)) + 1e-9


def test_arena_records_carry_the_battles_over_real_text():
    from node.queries import battle_rows
    from node.synth import arena_battles, arena_models, arena_records

    pool = [TextGroup(f"prompt {i}", (f"answer {i} one", f"answer {i} two", f"answer {i} three")) for i in range(5)]
    battles = arena_battles(50, arena_models(3, seed=0), seed=2)
    recs = arena_records(battles, pool, seed=0, community="arena")
    assert len(recs) == len(battles) and len({r.key for r in recs}) == len(recs)
    assert all(r.prompt[0].text.startswith("prompt") and r.responses[0].text != r.responses[1].text for r in recs)
    rows = battle_rows(recs)
    assert sorted((who, key) for who, key in rows) == sorted((w, (a, b, o)) for w, a, b, o in battles)


FORMATS = Path(__file__).resolve().parents[2] / "fixtures" / "formats"


def test_pool_is_read_by_the_importers_from_any_format():
    pool = load_text_pool([FORMATS])
    prompts = {g.prompt for g in pool}
    assert "What is the capital of Australia?" in prompts  # arena battles (arena.json)
    assert all(len(set(g.responses)) == len(g.responses) >= 2 for g in pool)
    oasst = load_text_pool([FORMATS / "oasst_tree.jsonl"])  # a format without contributor ids reads too
    assert len(oasst) == 1 and oasst[0].prompt in prompts
    with pytest.raises(SynthError, match="no-such-folder"):  # a missing data folder is named, not an empty pool
        load_text_pool([FORMATS.parent / "no-such-folder"])


def test_default_data_dir_is_the_shared_data_unless_the_environment_says(monkeypatch, tmp_path):
    from node.synth import default_data_dir

    monkeypatch.setenv("CAIRN_SHARED_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("CAIRN_SHARED_DATA")
    assert default_data_dir() == Path(__file__).resolve().parents[3] / "shared" / "data"
