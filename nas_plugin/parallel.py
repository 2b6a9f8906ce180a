"""A generation's subnets evaluated by local worker processes, each holding the supernet and the data once.

Every worker gets the supernet when it starts (its tensors in shared memory, so an untrained supernet's random
weights are the same everywhere), builds its own `AccuracyEvaluator` and keeps it between generations; subnets go
out one at a time, so a worker that finishes early takes the next one. An evaluation is a pure function of
(supernet, arch, data, seed), so the results equal a serial run's (tested). A worker that dies (out of memory,
killed) takes its subnet with it: the pool is restarted and the unfinished subnets are evaluated again.
"""

import concurrent.futures as cf
import multiprocessing
import os
import threading
import time

from .errors import NASError

RESTARTS = 2  # pool restarts per generation before the search gives up

_evaluator = None  # in a worker process: its AccuracyEvaluator, built once by _start


def _exit_with(parent):
    """Stop this worker once `parent` is gone: a search killed outright (SIGTERM, SIGKILL, out of memory) runs no
    clean-up, and its workers, waiting on a queue whose write end they hold themselves, would otherwise live on."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _start(supernet, threads, evaluator_args):
    global _evaluator
    from .evaluation import process_evaluator

    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    _evaluator = process_evaluator(supernet, threads, **evaluator_args)


def _evaluate(arch):
    return _evaluator([arch])[0]


class WorkerPool:
    """`pool(archs)` -> one result per arch, as `AccuracyEvaluator(archs)` returns them, from `workers` processes.

    `evaluator_args` are `AccuracyEvaluator`'s keyword arguments after the supernet (data, imgsz, work_dir, ...); the
    machine's cores are shared out among the workers.
    """

    def __init__(self, supernet, workers, restarts=RESTARTS, **evaluator_args):
        from .evaluation import cores

        self.supernet, self.workers, self.restarts = supernet, workers, restarts
        self.threads, self.evaluator_args = max(1, cores() // workers), evaluator_args
        self._executor = None

    def _pool(self):
        if self._executor is None:
            self._executor = cf.ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),  # no forked torch thread pools
                initializer=_start,
                initargs=(self.supernet, self.threads, self.evaluator_args),
            )
        return self._executor

    def __call__(self, archs):
        from ultralytics.utils import LOGGER

        results = {}
        for attempt in range(self.restarts + 1):
            futures, broken = {}, False
            try:
                for i, a in enumerate(archs):
                    if i not in results:
                        futures[self._pool().submit(_evaluate, a)] = i
            except (cf.process.BrokenProcessPool, ValueError, OSError):
                # a worker died while another was still starting: the pool refuses work, or the late worker's start
                # fails on the queue the stdlib closed when it saw the death
                broken = True
            cf.wait(futures)
            for future, i in futures.items():
                error = future.exception()
                if error is None:
                    results[i] = future.result()
                elif isinstance(error, cf.process.BrokenProcessPool):
                    broken = True
                else:
                    raise error
            if not broken:
                return [results[i] for i in range(len(archs))]
            self.close(broken=True)
            if attempt < self.restarts:
                LOGGER.warning(
                    f"a search worker died; restarting {self.workers} workers to evaluate the "
                    f"{len(archs) - len(results)} unfinished subnets again"
                )
        raise NASError(
            f"search workers died {self.restarts + 1} times in one generation; the generations finished so far are "
            "in history.csv: run again with --resume (fewer --workers if memory ran out)."
        )

    def close(self, broken=False):
        if self._executor is not None:
            if broken:  # a worker that was still starting when another died is left out of the stdlib's clean-up
                # (Python 3.11: it never gets the stop signal and shutdown would wait for it forever): stop the rest
                for process in (getattr(self._executor, "_processes", None) or {}).values():
                    if process.is_alive():
                        process.terminate()
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
