"""Per-request simulator directives and the fault plan they lead to."""

from __future__ import annotations

import random

import pytest

from simulator.directives import Directive, FailureCounter, directive_text, parse_directive
from simulator.errors import ApiError
from simulator.faults import NO_FAULTS, plan_faults
from simulator.latency import parse_latency
from simulator.settings import SimulatorSettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sim:status=400", Directive("sim:status=400", status=400)),
        ("sim:status=500;times=2", Directive("sim:status=500;times=2", status=500, times=2)),
        (
            "sim: status=429 ; retry_after=1.5",
            Directive("sim: status=429 ; retry_after=1.5", status=429, retry_after=1.5),
        ),
        ("sim:latency=1500", Directive("sim:latency=1500", latency_ms=1500.0)),
        ("sim:hang", Directive("sim:hang", hang=True)),
        ("sim:hang=0.2", Directive("sim:hang=0.2", hang=True, hang_seconds=0.2)),
        ("sim:malformed", Directive("sim:malformed", malformed=True)),
        ("sim:quota", Directive("sim:quota", quota=True)),
        ("status=503", Directive("status=503", status=503)),
    ],
)
def test_directives_parse(text: str, expected: Directive) -> None:
    assert parse_directive(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("sim:status=200", "between 400 and 599"),
        ("sim:status=abc", "status must be an integer"),
        ("sim:times=2", "times needs a status"),
        ("sim:latency=-1", "not negative"),
        ("sim:explode", "unknown item 'explode'"),
        ("sim:colour=red", "unknown item 'colour'"),
    ],
)
def test_bad_directives_are_400s_naming_the_field(text: str, reason: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_directive(text, "metadata.sim")
    assert caught.value.status == 400
    assert caught.value.param == "metadata.sim"
    assert reason in caught.value.message


def test_where_directives_are_read() -> None:
    assert directive_text({"user": "sim:status=500"}, "chat") == ("sim:status=500", "user")
    assert directive_text({"user": "alice"}, "chat") is None
    assert directive_text({"metadata": {"sim": "status=503"}}, "chat") is None
    both = {"metadata": {"sim": "status=503"}, "user": "sim:status=500"}
    assert directive_text(both, "responses") == ("status=503", "metadata.sim")


def test_times_fails_the_first_calls_of_that_exact_text() -> None:
    counter = FailureCounter()
    twice = parse_directive("sim:status=500;times=2")
    assert [counter.should_fail(twice) for _ in range(4)] == [True, True, False, False]
    other = parse_directive("sim:status=500;times=2;latency=0")
    assert counter.should_fail(other)
    always = parse_directive("sim:status=400")
    assert all(counter.should_fail(always) for _ in range(3))
    assert not counter.should_fail(parse_directive("sim:latency=5"))
    counter.clear()
    assert counter.should_fail(twice)


def test_no_faults_without_configuration() -> None:
    assert plan_faults(SimulatorSettings(), None, random.Random(1)) is NO_FAULTS


def test_directive_latency_and_hang_add_up() -> None:
    settings = SimulatorSettings(latency=parse_latency("fixed:50"), hang_seconds=7)
    plan = plan_faults(settings, parse_directive("sim:latency=1500;hang"), random.Random(1))
    assert plan.delay_seconds == pytest.approx(8.5)
    assert plan_faults(settings, None, random.Random(1)).delay_seconds == pytest.approx(0.05)


def test_rates_of_one_always_fault() -> None:
    settings = SimulatorSettings(error_rate=1.0, malformed_rate=1.0, hang_rate=1.0, hang_seconds=2)
    plans = [plan_faults(settings, None, random.Random(seed)) for seed in range(30)]
    assert {plan.error_status for plan in plans} == {500, 502, 503}
    assert all(plan.malformed and plan.delay_seconds == 2 for plan in plans)


def test_latency_specs() -> None:
    rng = random.Random(7)
    uniform = parse_latency("uniform:10:20")
    assert all(0.010 <= uniform.sample_seconds(rng) <= 0.020 for _ in range(100))
    lognormal = parse_latency("lognormal:100:0.5")
    draws = sorted(lognormal.sample_seconds(rng) for _ in range(2001))
    assert draws[1000] == pytest.approx(0.1, rel=0.1)
    assert str(parse_latency("fixed:0")) == "fixed:0"
    assert str(uniform) == "uniform:10:20"
    for bad in ("fixed", "uniform:5", "uniform:9:1", "lognormal:100:0", "gauss:1:2", "fixed:x", "fixed:-1"):
        with pytest.raises(ValueError, match="latency"):
            parse_latency(bad)
