"""Accuracy of the full-rank Gaussian family on the shared posteriordb reference posteriors.

Near-Gaussian posteriors must be recovered: worst |mean error| <= 0.1 reference sd and sd ratio
in [0.9, 1.1]. Eight schools (non-centered) is near-Gaussian but skewed in log tau: the best
full-rank Gaussian under KL(q||p) itself has tau 0.18-0.21 sd low with sd ratio 0.76-0.79
(measured with 16 particles and 100,000 steps), so plain full-rank VI cannot meet 0.1 there; its
test checks that provi reaches that optimum, and that the PSIS-corrected draws meet 0.1 where the
correction is given (near k-hat 0.7 it may be refused, in words).
"""

import pytest

import provi
from provi.examples.posteriordb import load

pytestmark = pytest.mark.slow

N = 20_000


def _errors(name, res, correct=None):
    p = load(name)
    q = p.quantities(res.sample(N, seed=1, correct=correct))
    ref = p.reference_summary()
    err = {k: abs(q[k].mean() - ref[k]["mean"]) / ref[k]["sd"] for k in ref}
    ratio = {k: q[k].std() / ref[k]["sd"] for k in ref}
    return err, ratio


@pytest.mark.parametrize(
    "name",
    [
        "kidiq-kidscore_interaction",
        "earnings-logearn_interaction_z",
        "sblrc-blr",
        "kilpisjarvi_mod-kilpisjarvi",
        "low_dim_gauss_mix-low_dim_gauss_mix",
    ],
)
def test_fullrank_recovers_near_gaussian_posteriors(name):
    p = load(name)
    res = provi.fit(p.model, *p.args, guide="fullrank", progress=False, **p.kwargs)
    err, ratio = _errors(name, res)
    assert max(err.values()) <= 0.1, err
    assert 0.9 <= min(ratio.values()) and max(ratio.values()) <= 1.1, ratio


def test_fullrank_eight_schools_noncentered():
    name = "eight_schools-eight_schools_noncentered"
    p = load(name)
    res = provi.fit(p.model, *p.args, guide="fullrank", progress=False, seed=0)
    err, ratio = _errors(name, res)
    assert max(err.values()) <= 0.3 and min(ratio.values()) >= 0.7  # at the KL optimum (see above)
    assert max(v for k, v in err.items() if k != "tau") <= 0.1
    d = res.diagnostics()
    assert d.khat < 0.7
    # this fit's k-hat is 0.52-0.66 from one set of draws to the next: on the 80,000 draws below a
    # PSIS correction may be refused (k-hat within a standard error of 0.7), and then it must say
    # so; given, it must be accurate (test_posteriordb_accuracy holds auto's corrected answers on
    # this posterior to 0.1 every time)
    try:
        err, ratio = _errors(name, res, correct="psis")
    except ValueError as e:
        assert "PSIS correction is unreliable here" in str(e) and "standard error of 0.7" in str(e)
        return
    assert max(err.values()) <= 0.1, err
    assert 0.9 <= min(ratio.values()) and max(ratio.values()) <= 1.1, ratio


def test_centered_funnel_gets_an_honest_warning():
    p = load("eight_schools-eight_schools_centered")
    res = provi.fit(p.model, *p.args, guide="fullrank", progress=False)
    d = res.diagnostics()
    assert d.khat >= 0.7 and not d.trustworthy
    assert "do not trust" in str(d)
    assert any("no mode" in n for n in res.stop.notes)
