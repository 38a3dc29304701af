"""The statistics of `fastnn._bench` that bench/report.py prints (no timing is asserted)."""
import math

from fastnn import _bench


def test_paired_ratio_is_the_median_of_the_rounds_both_timed():
    slow = _bench.Timing("slow", by_round={0: 2.0, 1: 9.0, 2: 3.0, 5: 1.0})
    fast = _bench.Timing("fast", by_round={0: 1.0, 1: 3.0, 2: 1.0, 3: 1.0})
    # rounds 0, 1, 2: ratios 2, 3, 3 (round 3 has no slow sample, round 5 no fast one)
    assert _bench.paired_ratio(slow, fast) == 3.0
    assert math.isnan(_bench.paired_ratio(slow, _bench.Timing("none")))


def test_measure_records_every_sample_by_its_round():
    calls = []
    contenders = [_bench.Contender(name, lambda n=name: calls.append(n), warmup=False,
                                   settle=0.0) for name in ("a", "b")]
    timings = _bench.measure(contenders, rounds=3)
    for name in ("a", "b"):
        t = timings[name]
        assert sorted(t.by_round) == [0, 1, 2]
        assert sorted(t.by_round.values()) == sorted(t.clean + t.dirty)
    assert calls.count("a") == calls.count("b") == 3
    assert _bench.paired_ratio(timings["a"], timings["b"]) > 0
