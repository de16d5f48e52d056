"""The stage-order check and the named constants."""

import pytest

from privacy.secagg.constants import Key, SecAggError, Stage


def test_each_stage_follows_the_one_before():
    done = ""
    for stage in Stage.ALL:
        Stage.check_next(done, stage)
        done = stage
    with pytest.raises(SecAggError, match="before secagg_shares"):
        Stage.check_next(Stage.KEYS, Stage.MASKED)
    with pytest.raises(SecAggError, match="already answered"):
        Stage.check_next(Stage.MASKED, Stage.SHARES)
    with pytest.raises(SecAggError, match="unknown SecAgg"):
        Stage.check_next("", "setup")


def test_constant_classes_are_not_instantiated():
    for cls in (Stage, Key):
        with pytest.raises(TypeError):
            cls()
