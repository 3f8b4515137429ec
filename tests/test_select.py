from tasks.select import Candidate, choose


def candidate(name: str, map50: float, latency_ms: float) -> Candidate:
    return Candidate(name, None, 0.5, base_map50=0.88, map50=map50, latency_ms=latency_ms, gflops_640=1.0)


def test_choose_takes_the_fastest_within_the_allowed_drop():
    slow_good = candidate("a", 0.89, 10.0)
    fast_ok = candidate("b", 0.86, 6.0)
    fastest_bad = candidate("c", 0.70, 4.0)
    assert choose([slow_good, fast_ok, fastest_bad], max_map50_drop=0.03) == fast_ok
    assert choose([slow_good, fast_ok, fastest_bad], max_map50_drop=0.2) == fastest_bad
    assert choose([fastest_bad], max_map50_drop=0.03) is None
    # a negative budget: the candidate must beat the base (0.88) by that much
    assert choose([slow_good, fast_ok, fastest_bad], max_map50_drop=-0.005) == slow_good
    assert choose([slow_good, fast_ok, fastest_bad], max_map50_drop=-0.02) is None
