"""Non-dominated sorting on cases whose fronts are known by construction."""
import numpy as np
import pytest

from search.definition.objectives import Objective, dominance_matrix, non_dominated_ranks, pareto_mask

SENSES = ["max", "min"]  # val_ua up, latency down


def test_objective_parse_and_errors():
    assert Objective.parse("val_ua:max") == Objective("val_ua", "max")
    assert str(Objective.parse(" latency_ms : min ")) == "latency_ms:min"
    for bad in ["val_ua", ":max", "val_ua:up"]:
        with pytest.raises(ValueError):
            Objective.parse(bad)


def test_ranks_follow_constructed_fronts():
    # front 0: a trade-off curve; front 1: each point shifted worse on both; front 2: worse still
    front0 = [[0.9, 30.0], [0.8, 10.0], [0.7, 5.0]]
    front1 = [[0.85, 35.0], [0.75, 12.0], [0.65, 6.0]]
    front2 = [[0.6, 40.0]]
    v = np.array(front2 + front0 + front1)
    assert non_dominated_ranks(v, SENSES).tolist() == [2, 0, 0, 0, 1, 1, 1]
    assert pareto_mask(v, SENSES).tolist() == [False, True, True, True, False, False, False]


def test_senses_matter():
    v = np.array([[0.9, 30.0], [0.8, 10.0]])
    assert non_dominated_ranks(v, ["max", "min"]).tolist() == [0, 0]  # a trade-off
    assert non_dominated_ranks(v, ["max", "max"]).tolist() == [0, 1]  # first better on both
    assert non_dominated_ranks(v, ["min", "min"]).tolist() == [1, 0]


def test_equal_trials_share_a_rank_and_do_not_dominate_each_other():
    v = np.array([[0.8, 10.0], [0.8, 10.0], [0.7, 10.0]])
    d = dominance_matrix(v, SENSES)
    assert not d[0, 1] and not d[1, 0] and d[0, 2] and d[1, 2]
    assert non_dominated_ranks(v, SENSES).tolist() == [0, 0, 1]


def test_missing_objective_is_never_on_the_front():
    # the NaN trial would be non-dominated by its latency alone; it was never scored on val_ua
    v = np.array([[0.8, 10.0], [np.nan, 1.0], [0.7, 20.0]])
    assert non_dominated_ranks(v, SENSES).tolist() == [0, 2, 1]
    assert pareto_mask(v, SENSES).tolist() == [True, False, False]
    assert pareto_mask(np.array([[np.nan, 1.0]]), SENSES).tolist() == [False]


def test_matches_brute_force_on_random_points():
    rng = np.random.default_rng(0)
    v = rng.random((60, 3))
    senses = ["max", "min", "min"]
    mask = pareto_mask(v, senses)
    m = v * np.array([-1, 1, 1])
    brute = [not any((m[j] <= m[i]).all() and (m[j] < m[i]).any() for j in range(len(m))) for i in range(len(m))]
    assert mask.tolist() == brute


def test_crowding_distance_follows_nsga2_on_a_known_front():
    from search.definition.objectives import crowding_distance

    # one front of four (val_ua up, params down): ends inf, middles by their neighbours' gaps
    v = np.array([[0.40, 50.0], [0.45, 70.0], [0.50, 100.0], [0.60, 200.0]])
    d = crowding_distance(v, SENSES)
    assert np.isinf(d[0]) and np.isinf(d[3])
    assert d[1] == pytest.approx((0.50 - 0.40) / 0.20 + (100 - 50) / 150)
    assert d[2] == pytest.approx((0.60 - 0.45) / 0.20 + (200 - 70) / 150)
    # fronts are measured separately; a front of one or two is all ends; NaN rows get 0
    w = np.array([[0.9, 30.0], [0.8, 10.0], [0.7, 40.0], [np.nan, 1.0]])
    assert crowding_distance(w, SENSES).tolist() == [np.inf, np.inf, np.inf, 0.0]


def test_crowding_distance_does_not_depend_on_row_order():
    from search.definition.objectives import crowding_distance

    # two trials tie at the low end of params: both are ends, whichever comes first
    v = np.array([[0.5, 10.0], [0.7, 30.0], [0.6, 20.0], [0.5, 10.0], [0.65, 25.0]])
    d = crowding_distance(v, SENSES)
    perm = np.array([4, 2, 0, 3, 1])
    assert crowding_distance(v[perm], SENSES).tolist() == pytest.approx(d[perm].tolist())
    assert np.isinf(d[0]) and np.isinf(d[3])


def test_objectives_from_a_sweep_record():
    from search.definition.objectives import objectives_from_record

    record = {"format": 1, "sweep": {"sweep": {"name": "x", "objectives": ["val_ua:max", "latency_ms:min"]}}}
    assert objectives_from_record(record) == [Objective("val_ua", "max"), Objective("latency_ms", "min")]
    assert objectives_from_record({"format": 1, "sweep": {"sweep": {"name": "x"}}}) is None
