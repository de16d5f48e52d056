"""Shared set-up for end-to-end tests: small communities with consent in the past."""

from pathlib import Path

import pytest

from node.consent import record_consent
from node.node_dir import NodeDir
from node.schema import Feedback, Message, Record, Response
from privacy.policy import Policy

WORDS = "river stone mountain valley forest meadow harbor canyon glacier island desert prairie".split()


def synthetic_records(community: int, n_contributors: int, pairs_each: int, canary: str | None = None) -> list[Record]:
    """Contributors prefer the longer, more detailed answer (a learnable rule)."""
    out = []
    for c in range(n_contributors):
        cid = f"c{community}-{c}"
        for k in range(pairs_each):
            topic = WORDS[(c + k) % len(WORDS)]
            prompt = f"Tell me about the {topic} number {k}."
            if canary and c == 0 and k == 0:
                prompt += f" My secret is {canary}."
            good = f"The {topic} is wide and old; it shaped the land, and people have lived near it for centuries."
            bad = f"{topic}."
            a_wins = (c + k) % 2 == 0
            out.append(Record(
                source="synthetic", key=f"{cid}/{k}", prompt=[Message("user", prompt)],
                responses=[Response(good if a_wins else bad, "m-good" if a_wins else "m-bad"),
                           Response(bad if a_wins else good, "m-bad" if a_wins else "m-good")],
                feedback=[Feedback("pairwise", cid, {"a": 0, "b": 1, "outcome": "a" if a_wins else "b", "strength": 1.0})],
                owner=cid, language="en",
            ))
    return out


def make_community(path: Path, name: str, community: int, n_contributors=40, pairs_each=4, canary=None,
                   epsilon_cap=8.0) -> NodeDir:
    nd = NodeDir.init(path, name, policy=Policy(community=name, min_contributors=10, epsilon_cap=epsilon_cap,
                                                 min_contributors_noise=0.0))  # exact threshold: stable tests
    with nd.open_store() as store:
        with store.transaction():
            for rec in synthetic_records(community, n_contributors, pairs_each, canary):
                store.add_record(rec, None)
        record_consent(store, None, "CC-BY-4.0", "2020-01-01T00:00:00+00:00", "test")
    return nd


@pytest.fixture
def communities(tmp_path):
    return [make_community(tmp_path / f"n{i}", f"community-{i}", i) for i in range(3)]
