"""A generation's subnets evaluated by Ray actors on a running cluster (`tools/search.py --ray auto|ADDRESS`).

The supernet reaches the actors through Ray's object store (put once); the dataset YAML and the images it names are
read by path, so they must be at the same path on every node (a shared filesystem, or a copy). Each actor builds its
`AccuracyEvaluator` once, in a temporary directory of its own node, and keeps it between generations. An actor that
dies is restarted by Ray and its subnet retried (`max_restarts` / `max_task_retries`); the driver keeps the history,
so `--resume` goes on after the driver dies. The results equal a local run's (tested on a local Ray instance).
"""

import socket
import tempfile

from .errors import NASError

RETRIES = 3  # Ray restarts of a dead actor, and retries of the subnet it was evaluating
CONNECT_TIMEOUT_S = 5  # ray.init retries an unreachable address for minutes: refuse it after this


def _import_ray():
    try:
        import ray
    except ImportError:
        raise NASError(
            "--ray needs Ray, which is not installed here: pip install -e '.[ray]' (or pip install 'ray>=2.9')."
        ) from None
    return ray


def _check_reachable(address):
    """Refuse an unreachable HOST:PORT at once (ray.init would retry it for minutes); 'auto' Ray resolves itself."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise NASError(f"--ray {address!r} is not an address: give 'auto' or HOST:PORT of the cluster's head node.")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise NASError(
            f"--ray {address}: no Ray cluster answers there ({e}); start one with `ray start --head` on the head "
            "node, or give its address (ray status prints it)."
        ) from None


def check_ray(address):
    """Refuse `--ray ADDRESS` before any work: Ray missing, or no cluster answering at a HOST:PORT; returns `ray`."""
    ray = _import_ray()
    if not ray.is_initialized():
        _check_reachable(address)
    return ray


def connect(address):
    """Connect this process to the Ray cluster at `address` (reuses a connection already made, e.g. by a test);
    returns (ray, whether this call started the connection)."""
    ray = check_ray(address)
    if ray.is_initialized():
        return ray, False
    try:
        ray.init(address=address, log_to_driver=False)
    except ConnectionError as e:
        raise NASError(f"--ray {address}: {e}") from None
    return ray, True


class _Evaluator:
    """One actor: an `AccuracyEvaluator` on its node, built once."""

    def __init__(self, supernet, evaluator_args, threads, device):
        from .evaluation import process_evaluator

        work = tempfile.mkdtemp(prefix="nas_plugin_ray_")  # the validator's files stay on this node
        self.evaluator = process_evaluator(supernet, threads, **{**evaluator_args, "work_dir": work, "device": device})

    def evaluate(self, arch):
        return self.evaluator([arch])[0]


class RayPool:
    """`pool(archs)` -> one result per arch, as `AccuracyEvaluator(archs)` returns them, from actors on a Ray cluster.

    One actor per `gpus_per_worker` GPUs when that is > 0, else per `cpus_per_worker` CPUs of the cluster (at most
    `workers` when given); `evaluator_args` are `AccuracyEvaluator`'s keyword arguments after the supernet.
    """

    def __init__(self, supernet, address="auto", cpus_per_worker=1, gpus_per_worker=0, workers=None, **evaluator_args):
        self.ray, self.owns_connection = connect(address)
        ray = self.ray
        resources = ray.cluster_resources()
        if gpus_per_worker:
            fits = int(resources.get("GPU", 0) // gpus_per_worker)
            kind = f"{gpus_per_worker} GPU(s)"
        else:
            fits = int(resources.get("CPU", 0) // cpus_per_worker)
            kind = f"{cpus_per_worker} CPU(s)"
        if fits < 1:
            raise NASError(f"the Ray cluster at {address} has no room for one worker of {kind}: it has {resources}.")
        n = min(fits, workers or fits)
        actor = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)(_Evaluator)
        self.supernet_ref = supernet_ref = ray.put(supernet)  # kept: a restarted actor reads it again
        device = evaluator_args.pop("device", "cpu")
        device = "cuda:0" if gpus_per_worker else device  # Ray hands each actor its GPUs as the visible ones
        self.actors = [
            actor.options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker).remote(
                supernet_ref, evaluator_args, cpus_per_worker, device
            )
            for _ in range(n)
        ]
        self.workers = n

    def __call__(self, archs):
        from ray.exceptions import RayError
        from ray.util import ActorPool

        try:
            return list(ActorPool(self.actors).map(lambda actor, arch: actor.evaluate.remote(arch), archs))
        except RayError as e:
            raise NASError(
                f"a Ray worker failed {RETRIES + 1} times on one subnet ({type(e).__name__}: {str(e)[:300]}); the "
                "generations finished so far are in history.csv: run again with --resume."
            ) from None

    def close(self):
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self.owns_connection:
            self.ray.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
