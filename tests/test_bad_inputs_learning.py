"""Bad hyperparameters of the learning rules are refused at construction, with a clear error.

The matrix: rule × parameter × bad value → expected error type and a regex that names the rule and
the parameter. COUNT = 216 cases (test_bad_hyperparameter_is_rejected): 17 numeric parameters ×
11 non-numbers (minus the 2 infinities for the 4 weight bounds, where inf means "no bound") = 179,
2 bool parameters × 5 non-bools = 10, and 27 out-of-range/overflow cases; test_case_count checks
the number. Plus 8 legal edge values in test_legal_edge_values_construct.

Values that ``_check_real`` accepted and the equations then broke on (an int too large for a
float raised ``OverflowError``; finite factors whose product overflows, e.g. ``lr * a_plus``,
turned every weight into ``inf``/NaN at the first step) are in the matrix too.
"""

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

from pysnn.learning import FedeSTDP, MSTDP, MSTDPET, STDP
from test_learning import LinearNet

COUNT = 216

# rule → (positional/keyword defaults that construct, numeric parameters, bool parameters)
RULES = {
    STDP: (
        dict(lr=0.1, a_plus=1.0, a_minus=1.0, w_min=0.0, w_max=1.0),
        ["lr", "a_plus", "a_minus", "w_min", "w_max"],
        [],
    ),
    MSTDP: (dict(a_pre=1.0, a_post=1.0, lr=0.1), ["a_pre", "a_post", "lr", "w_min", "w_max"], []),
    MSTDPET: (
        dict(a_pre=1.0, a_post=1.0, lr=0.1, e_trace_decay=0.5),
        ["a_pre", "a_post", "lr", "e_trace_decay"],
        ["per_sample_reward"],
    ),
    FedeSTDP: (dict(lr=0.1, w_init=0.5, a=0.5), ["lr", "w_init", "a"], ["post_spike_gated"]),
}

# bad for every numeric parameter: (id, value, error, message after "<param> must ")
NOT_A_NUMBER = [
    ("nan", math.nan, ValueError, "be finite"),
    ("inf", math.inf, ValueError, "be finite"),
    ("-inf", -math.inf, ValueError, "be finite"),
    ("np-nan", np.float64("nan"), ValueError, "be finite"),
    ("tensor-nan", torch.tensor(math.nan), ValueError, "be finite"),
    ("huge-int", 10**400, ValueError, "be finite"),
    ("str", "0.5", TypeError, "be a real number"),
    ("bool", True, TypeError, "be a real number"),
    ("np-bool", np.True_, TypeError, "be a real number"),
    ("tensor-2", torch.tensor([0.5, 0.5]), TypeError, "be a real number"),
    ("complex", 0.5 + 0j, TypeError, "be a real number"),
]
# bad for every bool parameter
NOT_A_BOOL = [
    ("int", 1, TypeError, "be a bool"),
    ("str", "True", TypeError, "be a bool"),
    ("none", None, TypeError, "be a bool"),
    ("np-bool", np.True_, TypeError, "be a bool"),
    ("tensor", torch.tensor(True), TypeError, "be a bool"),
]
# out of range or overflowing combinations: (rule, overrides, error, regex)
SPECIAL = [
    (STDP, dict(lr=0.0), ValueError, r"STDP: lr must be > 0"),
    (STDP, dict(lr=-1.0), ValueError, r"STDP: lr must be > 0"),
    (STDP, dict(a_plus=-1.0), ValueError, r"STDP: a_plus must be >= 0"),
    (STDP, dict(a_minus=-0.5), ValueError, r"STDP: a_minus must be >= 0"),
    (STDP, dict(w_min=1.0, w_max=0.5), ValueError, r"STDP: w_min must be < w_max"),
    (STDP, dict(w_min=None), TypeError, r"STDP: w_min and w_max must be numbers"),
    (STDP, dict(lr=1e200, a_plus=1e200), ValueError, r"STDP: lr \* a_plus must be finite"),
    (STDP, dict(lr=1e200, a_minus=1e200), ValueError, r"STDP: lr \* a_minus must be finite"),
    (
        STDP,
        dict(w_min=-1e308, w_max=1e308, weight_dependence="multiplicative"),
        ValueError,
        r"STDP: w_max - w_min must be finite",
    ),
    (
        STDP,
        dict(w_max=math.inf, weight_dependence="multiplicative"),
        ValueError,
        r"STDP: w_max must be finite",
    ),
    (STDP, dict(weight_dependence="soft"), ValueError, r"STDP: weight_dependence must be"),
    (STDP, dict(weight_dependence=None), ValueError, r"STDP: weight_dependence must be"),
    (STDP, dict(weight_dependence=True), ValueError, r"STDP: weight_dependence must be"),
    (STDP, dict(backend=1), ValueError, r"STDP: backend must be"),
    (MSTDP, dict(lr=0.0), ValueError, r"MSTDP: lr must be > 0"),
    (MSTDP, dict(w_min=1.0, w_max=1.0), ValueError, r"MSTDP: w_min must be < w_max"),
    (MSTDP, dict(lr=1e200, a_pre=1e200), ValueError, r"MSTDP: lr \* a_pre must be finite"),
    (MSTDP, dict(lr=1e200, a_post=-1e200), ValueError, r"MSTDP: lr \* a_post must be finite"),
    (MSTDP, dict(backend="gpu"), ValueError, r"MSTDP: backend must be"),
    (MSTDPET, dict(lr=-0.1), ValueError, r"MSTDPET: lr must be > 0"),
    (MSTDPET, dict(e_trace_decay=1.5), ValueError, r"MSTDPET: e_trace_decay must be <= 1"),
    (MSTDPET, dict(e_trace_decay=-1e-39), ValueError, r"MSTDPET: e_trace_decay must be >= 0"),
    (MSTDPET, dict(w_min=2.0, w_max=1.0), ValueError, r"MSTDPET: w_min must be < w_max"),
    (MSTDPET, dict(w_max="1"), TypeError, r"MSTDPET: w_max must be a real number"),
    (FedeSTDP, dict(lr=0.0), ValueError, r"FedeSTDP: lr must be > 0"),
    (FedeSTDP, dict(a=1.5), ValueError, r"FedeSTDP: a must be <= 1"),
    (FedeSTDP, dict(a=-0.1), ValueError, r"FedeSTDP: a must be >= 0"),
]


def _cases():
    cases = []
    for rule, (_, numeric, bools) in RULES.items():
        for param in numeric:
            for name, value, error, message in NOT_A_NUMBER:
                if param in ("w_min", "w_max") and name in ("inf", "-inf"):
                    continue  # infinite bounds are legal (no bound)
                regex = rf"^{rule.__name__}: {param} must {message}"
                cases.append(
                    pytest.param(
                        rule, {param: value}, error, regex, id=f"{rule.__name__}-{param}-{name}"
                    )
                )
        for param in bools:
            for name, value, error, message in NOT_A_BOOL:
                regex = rf"^{rule.__name__}: {param} must {message}"
                cases.append(
                    pytest.param(
                        rule, {param: value}, error, regex, id=f"{rule.__name__}-{param}-{name}"
                    )
                )
    for k, (rule, overrides, error, regex) in enumerate(SPECIAL):
        cases.append(
            pytest.param(rule, overrides, error, "^" + regex, id=f"{rule.__name__}-special{k}")
        )
    return cases


CASES = _cases()


def test_case_count():
    assert len(CASES) == COUNT


@pytest.mark.parametrize("rule, overrides, error, regex", CASES)
def test_bad_hyperparameter_is_rejected(rule, overrides, error, regex):
    net = LinearNet(0)
    weight = net.con.weight.clone()
    kwargs = {**RULES[rule][0], **overrides}
    with pytest.raises(error, match=regex):
        rule(net.layers, **kwargs)
    assert torch.equal(net.con.weight, weight)


@pytest.mark.parametrize(
    "rule, overrides",
    [
        (STDP, dict(w_min=-math.inf, w_max=math.inf)),  # unbounded additive STDP
        (STDP, dict(lr=torch.tensor(0.1), a_plus=np.float32(0.5))),
        (MSTDP, dict(a_pre=-1.0, w_min=None, w_max=None)),
        (MSTDPET, dict(e_trace_decay=0.0)),
        (MSTDPET, dict(e_trace_decay=1.0)),
        (MSTDPET, dict(e_trace_decay=1e-39)),  # subnormal: legal
        (MSTDPET, dict(e_trace_decay=5e-324, per_sample_reward=True)),
        (FedeSTDP, dict(a=0.0, post_spike_gated=True)),
    ],
)
def test_legal_edge_values_construct(rule, overrides, rng):
    net = LinearNet(0)
    r = rule(net.layers, **{**RULES[rule][0], **overrides})
    for _ in range(3):
        net(torch.from_numpy(rng.random((3, 1, 6)) < 0.6))
        r.update_state()
        r.step() if rule in (STDP, FedeSTDP) else r.step(0.5)
    assert bool(torch.isfinite(net.con.weight).all())
    assert isinstance(r.layers, OrderedDict)
