"""The thread policy: each training process takes its share of the cores it may really use."""

import os
from pathlib import Path

import pytest

from ltxtune.threads import THREADS_ENV, apply_thread_policy, available_cpus, cgroup_cpu_limit, choose_threads


@pytest.mark.parametrize(
    ("cpus", "slots", "threads"),
    [(1, 1, 1), (2, 1, 2), (2, 2, 1), (16, 4, 4), (16, 3, 5), (1.5, 1, 1), (0.5, 1, 1), (8, 16, 1), (8, 0, 8)],
)
def test_share_of_the_cores_per_slot(cpus, slots, threads):
    choice = choose_threads(cpus, slots)
    assert choice.threads == threads
    assert not choice.overridden


def test_override_wins_and_is_checked():
    assert choose_threads(2, 2, override="6").threads == 6
    assert choose_threads(2, 2, override=3).overridden
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match=THREADS_ENV):
            choose_threads(2, 1, override=bad)


def test_cgroup_v2_quota(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_quota(tmp_path: Path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 3.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_quota_lowers_the_affinity_count(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(tmp_path) == 0.5
    assert available_cpus(tmp_path / "absent") == len(os.sched_getaffinity(0))


def test_apply_sets_torch_threads(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv(THREADS_ENV, "1")
    try:
        choice = apply_thread_policy(slots=1)
        assert choice.threads == 1 and torch.get_num_threads() == 1
        assert THREADS_ENV in choice.describe()
    finally:
        torch.set_num_threads(before)
