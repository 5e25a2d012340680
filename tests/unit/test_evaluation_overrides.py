"""`make evaluate-ct`'s --policy overrides: each sweep point of docs/continuous_training.md is one command."""

import pytest

from mlplatform.drift_policy import DriftPolicy
from mlplatform.evaluation import policy_with_overrides


def test_overrides_keep_each_settings_type():
    policy = policy_with_overrides(DriftPolicy(), ["max_auc_drop=0.03", "performance_days=5", "max_age_days=28"])
    assert (policy.max_auc_drop, policy.performance_days, policy.max_age_days) == (0.03, 5, 28)
    assert isinstance(policy.performance_days, int) and policy.cooldown_days == DriftPolicy().cooldown_days


@pytest.mark.parametrize("bad", ["nope=1", "max_auc_drop", "performance_days=five", "max_age_days=3"])
def test_bad_overrides_are_refused(bad):
    with pytest.raises(ValueError):
        policy_with_overrides(DriftPolicy(), [bad])
