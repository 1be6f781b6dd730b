"""Executors: local and Ray give the same library; dead workers and failing jobs are
retried once then reported; a home the workers cannot see is a clear error."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from run_helpers import make_home, small_sweep

from skillbank.library import Library
from skillbank.run import MAX_ATTEMPTS, Job, get_executor
from skillbank.run.worker import HomeNotShared, check_home
from skillbank.skill import SkillError
from skillbank.sweep import Plan, run_sweep

HERE = Path(__file__).parent
ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'skillbank[ray]'")


@pytest.fixture(scope="module")
def ray_executor(tmp_path_factory, model_dir):
    """One local Ray cluster (loopback, 2 CPUs) and one actor pool for the whole module;
    its start-up (Ray, then two actors importing torch) is this fixture's setup time."""
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}})  # workers import run_helpers
    ex = get_executor("ray")
    home = make_home(tmp_path_factory.mktemp("warm") / "home", model_dir)
    assert ex.run(home, [Job("run_helpers:echo", {"value": 0})])[0].status == "done"
    print(f"\nray start-up (init + 2 actors): {time.perf_counter() - t0:.1f} s")
    yield ex
    ex.close()
    ray.shutdown()


def library_state(home: Path) -> tuple[dict, dict]:
    """Skills (name → content hash) and results ((subject, task, seed) → metrics)."""
    with Library.open(home) as lib:
        skills = {r.name: (r.version, r.content_hash) for r in lib.list()}
        results = {(r["subject"], r["task"], r["spec"]["seed"]): r["metrics"]
                   for r in lib.results()}
    return skills, results


def test_ray_matches_local_with_a_worker_killed_mid_sweep(tmp_path, model_dir, ray_executor):
    local_home = make_home(tmp_path / "local", model_dir)
    with Library.open(local_home) as lib, get_executor("local") as ex:
        summary = run_sweep(lib, small_sweep(), ex)
    assert (summary["done"], summary["failed"]) == (8, 0)

    ray_home = make_home(tmp_path / "ray", model_dir)
    marker = tmp_path / "killed-once"
    with Library.open(ray_home) as lib:
        plan = Plan(lib, small_sweep())
        for stage in (plan.train, plan.compose):
            jobs, settled = stage()
            assert settled == [] and all(r.status == "done"
                                         for r in ray_executor.run(ray_home, jobs))
        jobs, settled = plan.eval()
        assert settled == [] and len(jobs) == 6
        crash = Job("run_helpers:crash_once", {"marker": str(marker), "value": 1}, "crash")
        fails = Job("run_helpers:always_fails", {"value": 2}, "fails")
        seen = []
        results = ray_executor.run(ray_home, jobs[:2] + [crash] + jobs[2:4] + [fails] + jobs[4:],
                                   on_result=seen.append)
    assert len(seen) == len(results) == 8
    by_label = {r.job.label: r for r in results}
    killed = by_label["crash"]
    assert killed.status == "done" and killed.attempts == 2
    assert killed.result["pid"] != int(marker.read_text())  # it ran again on a new worker
    failed = by_label["fails"]
    assert (failed.status, failed.attempts) == ("failed", MAX_ATTEMPTS)
    assert failed.error == "RuntimeError: job 2 always fails"
    assert all(r.status == "done" and r.attempts == 1 for r in results if r.job.kind == "eval")
    assert len(ray_executor.actors) == ray_executor.workers == 2  # the dead one was replaced

    local, remote = library_state(local_home), library_state(ray_home)
    assert local[0] == remote[0]  # same skills, same versions, same tensors
    assert local[1] == remote[1] and len(local[1]) == 6  # every metric of every cell


def test_ray_workers_hold_their_model_and_threads(tmp_path, model_dir, ray_executor):
    home = make_home(tmp_path / "home", model_dir)
    info = [ray.get(a.check.remote(str(home), None)) for a in ray_executor.actors]
    assert {i["threads"] for i in info} == {1}  # set explicitly, one per reserved CPU
    assert len({i["pid"] for i in info}) == 2 and os.getpid() not in {i["pid"] for i in info}
    jobs = [Job("run_helpers:echo", {"value": v}, f"echo {v}") for v in range(10)]
    results = ray_executor.run(home, jobs)
    assert [r.result["value"] for r in results] == list(range(10))  # job order kept
    assert {r.result["pid"] for r in results} <= {i["pid"] for i in info}  # actors reused


def test_home_the_workers_cannot_see(tmp_path, model_dir, ray_executor, monkeypatch):
    home = make_home(tmp_path / "home", model_dir)
    # the driver's probe file never reaches the workers: as if they mounted another disk
    monkeypatch.setattr("skillbank.run.write_probe", lambda h: f"{os.getpid()}-probe-elsewhere")
    with pytest.raises(SkillError, match=r"sees a different directory at .*home.* than the "
                                         r"driver.*storage every worker shares"):
        ray_executor.run(home, [Job("run_helpers:echo", {"value": 0})])
    with pytest.raises(HomeNotShared, match=r"cannot see the library home .*nowhere"):
        check_home(tmp_path / "nowhere", None)
    assert not (tmp_path / "nowhere").exists()  # checked before anything is created


def test_local_pool_retries_a_dead_process(tmp_path, model_dir):
    home = make_home(tmp_path / "home", model_dir)
    marker = tmp_path / "killed-once"
    jobs = [Job("run_helpers:echo", {"value": 0}, "a"),
            Job("run_helpers:crash_once", {"marker": str(marker), "value": 1}, "crash"),
            Job("run_helpers:always_fails", {"value": 2}, "fails"),
            Job("run_helpers:echo", {"value": 3}, "b")]
    with get_executor("local", workers=2) as ex:
        results = ex.run(home, jobs)
    assert [r.status for r in results] == ["done", "done", "failed", "done"]
    assert results[1].attempts == 2 and results[1].result["pid"] != int(marker.read_text())
    assert results[2].error == "RuntimeError: job 2 always fails"


def test_a_death_beside_other_jobs_costs_none_of_them_an_attempt(tmp_path, model_dir):
    """A broken pool fails every job running on it; each re-runs alone, where only the job
    that kills its process is charged (twice, then failed) and the others finish."""
    home = make_home(tmp_path / "home", model_dir)
    jobs = [Job("run_helpers:crash_always", {}, "killer"),
            Job("run_helpers:always_fails", {"value": 2}, "fails"),
            Job("run_helpers:echo", {"value": 3}, "b"), Job("run_helpers:echo", {"value": 4}, "c")]
    with get_executor("local", workers=2) as ex:
        results = ex.run(home, jobs)
    assert [r.status for r in results] == ["failed", "failed", "done", "done"]
    assert results[0].error == "worker process died while running the job"
    assert results[1].error == "RuntimeError: job 2 always fails"
    assert results[0].attempts in (2, 3)   # 3 if its first death had a neighbour (spared)


def test_in_process_retries_once_then_reports(tmp_path, model_dir):
    home = make_home(tmp_path / "home", model_dir)
    jobs = [Job("run_helpers:always_fails", {"value": 7}, "fails"),
            Job("run_helpers:echo", {"value": 8}, "ok"), Job("nosuchkind", {}, "bad kind")]
    with get_executor() as ex:
        results = ex.run(home, jobs)
    assert [(r.status, r.attempts) for r in results] == [("failed", 2), ("done", 1), ("failed", 2)]
    assert results[1].result == {"pid": os.getpid(), "value": 8}
    assert results[2].error.startswith("unknown job kind 'nosuchkind'")


def test_run_all_raises_after_every_job_ran(tmp_path, model_dir):
    home = make_home(tmp_path / "home", model_dir)
    seen = []
    jobs = [Job("run_helpers:echo", {"value": 1}, "first"),
            Job("run_helpers:always_fails", {"value": 2}, "fails"),
            Job("run_helpers:echo", {"value": 3}, "last")]
    with get_executor() as ex:
        assert [r.result["value"] for r in ex.run_all(home, [jobs[0], jobs[2]], "echo")] == [1, 3]
        with pytest.raises(SkillError, match=r"^1 of 3 echo jobs failed; first: fails: "
                                             r"RuntimeError: job 2 always fails$"):
            ex.run_all(home, jobs, "echo", progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("args, message", [
    (("slurm",), "unknown executor 'slurm'"),
    (("local", "10.0.0.1:6379"), "--address names a Ray cluster"),
    (("local", None, 0), "workers must be ≥ 1"),
])
def test_bad_executor_arguments(args, message):
    with pytest.raises(SkillError, match=message):
        get_executor(*args)


def test_tensor_threads_untouched_in_process():
    n = torch.get_num_threads()
    with get_executor("local"):
        assert torch.get_num_threads() == n
