"""Campaigns: the plan's checks, its points' stable keys, sharding, and resume from the store."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from benchmark.__main__ import main as benchmark_main
from benchmark.campaign import done_points, run_id_of
from benchmark.plan import Point, check_plan, parse_shard, shard_points, slurm_shard
from benchmark.records import RunEnd, RunFail, RunStart, RunTags, write_event
from exporters.errors import UsageError

PLAN = {
    "campaign": "c1",
    "models": ["mobilenetv3_small", "digits_cnn"],
    "batch_sizes": [1, 8],
    "precisions": ["fp32"],
    "repeats": 2,
    "data": "synthetic",
    "limit": 16,
}


def plan_of(**changes: object):
    problems: list[str] = []
    plan = check_plan({**PLAN, **changes}, problems)
    assert plan is not None, problems
    return plan


def test_points_come_in_a_stable_order_with_stable_distinct_keys() -> None:
    plan = plan_of()
    assert len(plan.points) == 2 * 2 * 2
    assert [p.index for p in plan.points] == list(range(8))
    assert [p.repeat for p in plan.points] == [1] * 4 + [2] * 4  # repeats spread out in time
    assert len({p.key for p in plan.points}) == 8
    assert plan_of().points == plan.points  # the same plan, the same keys
    swapped = plan_of(models=["digits_cnn", "mobilenetv3_small"])
    assert {p.key for p in swapped.points} == {p.key for p in plan.points}  # order: not the key
    assert swapped.points[0].key == plan.points[2].key
    for change in ({"limit": 17}, {"data": "digits"}, {"precisions": ["fp16"]}, {"jit": ["on"]},
                   {"weights": "random"}):  # fmt: skip
        assert not {p.key for p in plan_of(**change).points} & {p.key for p in plan.points}


def test_model_names_are_the_registry_names() -> None:
    plan = plan_of(models=["MobileNetV3Small"])
    assert {p.model for p in plan.points} == {"mobilenetv3_small"}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"campaign": None}, "campaign: missing"),
        ({"campaign": "a\nb"}, "campaign: 'a\\nb' is not usable"),
        ({"models": []}, "models: empty"),
        ({"models": ["no_such_model"]}, "models: unknown model 'no_such_model'"),
        ({"models": ["digits_cnn", "DIGITS-CNN"]}, "is digits_cnn again: list each model once"),
        ({"batch_sizes": [0]}, "batch_sizes: 0 is not a whole number"),
        ({"batch_sizes": [True]}, "batch_sizes: True is not a whole number"),
        ({"batch_sizes": [8, 8]}, "batch_sizes: lists an item twice"),
        ({"repeats": 1.5}, "repeats: 1.5 is not a whole number"),
        ({"limit": "all"}, "limit: 'all' is not a whole number"),
        ({"data": "/no/such/dir"}, "data: '/no/such/dir' is not a directory"),
        ({"min_duration_s": -1}, "min_duration_s: -1 is not a number of seconds"),
        ({"precisions": ["fp99"]}, "fp99"),
        ({"backends": ["tensorflow", "nope"]}, "nope"),
        ({"modles": ["x"]}, "'modles': unknown key"),
        ({"repeats": 10**5}, "points, more than 100,000: split it"),
    ],
)
def test_each_problem_names_its_key(changes: dict, named: str) -> None:
    problems: list[str] = []
    assert check_plan({**PLAN, **changes}, problems) is None
    assert any(named in p for p in problems), problems


def test_a_bad_plan_is_one_line_naming_every_problem_and_exit_2(tmp_path, capsys) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({**PLAN, "batch_sizes": [0], "repeats": 0, "extra": 1}))
    store = f"sqlite:///{tmp_path}/s.db"
    assert benchmark_main(["campaign", str(path), "--store", store]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("benchmark: error: plan ") and "3 problems: " in line
    for named in ("batch_sizes: 0 is not", "repeats: 0 is not", "'extra': unknown key"):
        assert named in line
    assert not (tmp_path / "s.db").exists()  # nothing ran: the store was never opened
    path.write_text("campaign: [unclosed\n")
    assert benchmark_main(["campaign", str(path)]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err


@given(st.integers(0, 300), st.integers(1, 40))
def test_shards_split_the_points_each_into_exactly_one(n_points: int, count: int) -> None:
    points = [Point(i, f"k{i}", "m", 1, "tensorflow", "fp32", "auto", 1, "synthetic", None,
                    "auto", 0.0) for i in range(n_points)]  # fmt: skip
    shards = [shard_points(points, shard, count) for shard in range(count)]
    seen = [p.index for shard in shards for p in shard]
    assert sorted(seen) == list(range(n_points))  # every point, and each once
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # balanced
    assert all(s == sorted(s, key=lambda p: p.index) for s in shards)  # in the plan's order


SHARD_TEXT = st.one_of(
    st.text(max_size=12),
    st.builds("{}/{}".format, st.integers(-3, 200), st.integers(-3, 200)),
)


@given(SHARD_TEXT)
def test_shard_text_is_i_of_n_or_a_usage_error(text: str) -> None:
    try:
        shard, count = parse_shard(text)
    except UsageError as e:
        assert str(e).startswith("--shard ") and "\n" not in str(e)
    else:
        assert 0 <= shard < count
        assert [int(part) for part in text.strip().split("/")] == [shard, count]


def test_the_slurm_array_task_is_the_shard() -> None:
    assert slurm_shard({}) is None
    assert slurm_shard({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}) == (2, 3)
    array = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "3",
             "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_STEP": "2"}  # fmt: skip
    assert slurm_shard(array) == (2, 3)  # --array=3-7:2: tasks 3, 5, 7
    with pytest.raises(UsageError, match="SLURM_ARRAY_TASK_MIN"):
        slurm_shard({**array, "SLURM_ARRAY_TASK_MIN": "x"})


def _run(store, run_id: str, campaign: str | None, key: str | None, end: str | None) -> None:
    tags = RunTags(run_id, "m", "tensorflow", "synthetic", "h")
    write_event(store, tags, RunStart(campaign=campaign, campaign_point=key))
    if end == "end":
        write_event(store, tags, RunEnd(inferences=1))
    elif end == "fail":
        write_event(store, tags, RunFail(reason="broke"))
    store.flush()


def test_a_point_is_done_when_a_run_of_it_ended(store) -> None:
    _run(store, "a", "c1", "k1", "end")
    _run(store, "b", "c1", "k2", None)  # killed: started, never ended
    _run(store, "b2", "c1", "k2", "fail")
    _run(store, "c", "c2", "k3", "end")  # another campaign
    _run(store, "d", None, None, "end")  # not a campaign's run
    done, started = done_points(store, "c1")
    assert done == {"k1"}
    assert started == {"k1": 1, "k2": 2}
    point = plan_of().points[0]
    assert run_id_of("c1", point, 0) == f"c1-{point.key}"
    assert run_id_of("c1", point, 2) == f"c1-{point.key}-retry2"


VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 2**40), st.floats(), st.text(max_size=8),
              st.sampled_from(["mobilenetv3_small", "fp16", "jax", "on", "synthetic", "c"])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=2),
    max_leaves=6,
)  # fmt: skip
KEYS = st.sampled_from([*PLAN, "backends", "jit", "weights", "min_duration_s", "other"])


@given(st.dictionaries(KEYS, VALUES, max_size=6), st.dictionaries(KEYS, VALUES, max_size=2))
def test_any_plan_is_a_plan_or_its_problems(base: dict, more: dict) -> None:
    problems: list[str] = []
    plan = check_plan({**PLAN, **base} if len(base) % 2 else {**base, **more}, problems)
    assert (plan is None) == bool(problems)
    assert all("\n" not in p and ": " in p for p in problems)
    if plan is not None:
        assert [p.index for p in plan.points] == list(range(len(plan.points)))
        assert len({p.key for p in plan.points}) == len(plan.points)
