"""The Ray backend: each run of a sweep is one Ray task calling `sweep.run_one`.

`ray.init(address=...)` joins an existing cluster; without an address a local Ray instance
is started (and shut down afterwards). Tasks write their run folders themselves, under the
same OUT path as the driver: on a cluster of several machines OUT must therefore be on a
filesystem every node mounts at the same path (NFS, a cluster filesystem), and sgdwalk must
be installed in the Python environment of every node. Each task asks Ray for
max(1, cluster CPUs // workers) CPUs (at most a node's) and uses as many torch threads; a
run whose train.device is not "cpu" also asks for one GPU when the cluster has any.
"""

from __future__ import annotations

from collections.abc import Callable

from sgdwalk.config import config_from_toml
from sgdwalk.errors import ConfigError


def import_ray():
    """The ray module, or a one-line ConfigError saying how to get it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("backend ray: expected the ray package (pip install "
                          "'sgdwalk[ray]'), got ImportError") from None
    return ray


def run_on_ray(tasks: list[dict], workers: int, address: str | None,
               done: Callable[[dict], None]) -> bool:
    """Run `tasks` as Ray tasks, at most `workers` at once; `done(outcome)` as each ends.
    Returns True when interrupted (Ctrl-C), False when every task came back."""
    ray = import_ray()
    from sgdwalk.studies.sweep import one_line, run_one

    if not tasks:
        return False
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    try:
        cpus, gpus = _task_resources(ray, workers)
        remote = ray.remote(max_retries=0)(run_one)
        waiting = list(tasks)
        running: dict = {}
        while waiting or running:
            while waiting and len(running) < workers:
                task = waiting.pop(0)
                uses_gpu = gpus and config_from_toml(task["config"]).train.device != "cpu"
                ref = remote.options(num_cpus=cpus, num_gpus=1 if uses_gpu else 0).remote(
                    task, cpus)
                running[ref] = task
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                task = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the task's process died
                    outcome = {"name": task["name"], "status": "failed", "steps": 0,
                               "seconds": None, "run_dir": None, "error": one_line(exc)}
                done(outcome)
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref, force=True)  # the runs resume from their checkpoints next time
        return True
    finally:
        if started_here:
            ray.shutdown()
    return False


def _task_resources(ray, workers: int) -> tuple[int, bool]:
    """(CPUs per task, whether the cluster has GPUs)."""
    total = ray.cluster_resources()
    per_node = [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    largest = int(max(per_node, default=1)) or 1
    cpus = max(1, min(int(total.get("CPU", 1)) // workers, largest))
    return cpus, total.get("GPU", 0) > 0
