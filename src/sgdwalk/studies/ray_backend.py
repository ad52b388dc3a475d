"""The Ray executor: each run of a sweep is one Ray task calling `worker.run_one`.

`ray.init(address=...)` joins an existing cluster; without an address a local Ray instance
is started (and shut down afterwards). Tasks write their run folders themselves, under the
same OUT path as the driver: on a cluster of several machines OUT must therefore be on a
filesystem every node mounts at the same path (NFS, a cluster filesystem), and sgdwalk must
be installed in the Python environment of every node. Each task asks Ray for
max(1, cluster CPUs // workers) CPUs (at most a node's) and uses as many torch threads; a
run whose train.device is not "cpu" also asks for one GPU when the cluster has any. A task
whose process dies is recorded failed with Ray's one-line error; the others go on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from sgdwalk.config import config_from_toml
from sgdwalk.errors import ConfigError
from sgdwalk.studies.executors import Listener
from sgdwalk.studies.worker import Outcome, RunTask, one_line, run_one


def import_ray():
    """The ray module, or a one-line ConfigError saying how to get it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("backend ray: expected the ray package (pip install "
                          "'sgdwalk[ray]'), got ImportError") from None
    return ray


class RayExecutor:
    """At most `workers` Ray tasks at once; `address`: the cluster (None: a local one)."""

    def __init__(self, workers: int, address: str | None = None):
        self.ray = import_ray()  # before anything runs: a missing package is one line
        self.workers = workers
        self.address = address

    def run(self, tasks: Sequence[RunTask], listener: Listener) -> bool:
        if not tasks:
            return False  # nothing to train: Ray is not even started
        ray = self.ray
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        try:
            return self._run(ray, tasks, listener)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray, tasks: Sequence[RunTask], listener: Listener) -> bool:
        cpus, gpus = _task_resources(ray, self.workers)
        remote = ray.remote(max_retries=0)(run_one)
        waiting, running = deque(tasks), {}  # running: object ref -> task
        interrupted = False
        try:
            while running or (waiting and not interrupted):
                while waiting and not interrupted and len(running) < self.workers:
                    task = waiting.popleft()
                    uses_gpu = gpus and config_from_toml(task.config).train.device != "cpu"
                    ref = remote.options(num_cpus=cpus, num_gpus=1 if uses_gpu else 0).remote(
                        task, cpus)
                    running[ref] = task
                    listener.started(task)
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    outcome = _outcome(ray, ref, running.pop(ref))
                    listener.finished(outcome)
                    interrupted |= outcome.status == "stopped"
        except KeyboardInterrupt:
            for ref, task in running.items():
                ray.cancel(ref, force=True)  # the run resumes from its checkpoint next time
                listener.finished(Outcome(task.name, "stopped", error="cancelled by Ctrl-C"))
            return True
        return interrupted


def _outcome(ray, ref, task: RunTask) -> Outcome:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:  # the task's process died
        return Outcome.failed(task.name, one_line(exc))


def _task_resources(ray, workers: int) -> tuple[int, bool]:
    """(CPUs per task, whether the cluster has GPUs)."""
    total = ray.cluster_resources()
    per_node = [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    largest = int(max(per_node, default=1)) or 1
    cpus = max(1, min(int(total.get("CPU", 1)) // workers, largest))
    return cpus, total.get("GPU", 0) > 0
