"""Proving many theorems at once: in this process, over a local process pool, or over Ray actors.

Each worker builds its generator once (one model copy per worker) and proves one theorem per task; the
generator is re-seeded per theorem (:func:`theorem_seed`), so a theorem's result does not depend on which worker
ran it or what ran before — the pool gives the same results as a single process. Results are yielded as they
finish. Ctrl-C (KeyboardInterrupt) cancels queued work, stops the workers, and propagates; every result
yielded before it is kept by the caller. A failure inside one theorem (Lean, LeanDojo, a model server) is that
theorem's `ProofResult.error`, never the end of the pool.

GPUs: an in-process vLLM engine takes a GPU's memory, so local workers are then forced to one (use a
`vllm serve` server and `prover.vllm_url` for parallel workers); Ray actors that load a model on a GPU ask Ray
for one (`num_gpus`), so each gets its own.

Ray cluster mode ships the worker spec once (`ray.put`) and each actor opens the bank, the premise store and
checkpoints by the *driver's* paths: those must be on a filesystem every node mounts at the same path (or the
store on a chroma server, `[memory] chroma_url`). Every actor checks this at start and the run stops with one
line naming the missing path otherwise.
"""
from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import signal
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from curriculum.lean_data import Repository, Theorem
from provers.config import ProverConfig
from provers.factory import EnvFactory, GeneratorSpec, build_generator
from provers.search import ProofResult, best_first_search

Task = tuple[str, Theorem]   # (repository name, theorem)
WORKER_MEMORY_BYTES = 2 << 30  # a worker's share of RAM when sizing the pool: encoder + model + search


def theorem_seed(seed: int, uid: str) -> int:
    """A per-theorem seed independent of scheduling: sha256 of (run seed, theorem uid)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{uid}".encode()).digest()[:4], "big")


@dataclass
class WorkerSpec:
    """What a worker needs: the generator recipe, the repositories (for replay and accessibility), the seed."""

    generator: GeneratorSpec
    repositories: dict[str, Repository] = field(default_factory=dict)
    seed: int = 3407

    @property
    def config(self) -> ProverConfig:
        return self.generator.config

    def portable(self) -> "WorkerSpec":
        """What is shipped to a process or Ray worker: the recipe without this process's open bank and store."""
        return dataclasses.replace(self, generator=self.generator.portable())


class ProverWorker:
    """One prover: a generator and an environment factory, built once, proving theorems one at a time."""

    def __init__(self, spec: WorkerSpec, generator=None):
        self.spec = spec
        self.generator = generator if generator is not None else build_generator(spec.generator, spec.repositories)
        self.envs = EnvFactory(spec.config, spec.repositories)

    def prove(self, repo: str, theorem: Theorem) -> ProofResult:
        try:
            self.generator.reset(theorem_seed(self.spec.seed, theorem.uid))
            result = best_first_search(theorem, self.envs.open(repo, theorem), self.generator, self.spec.config,
                                       repo=repo)
        except Exception as exc:   # confined to this theorem: one line, the pool goes on
            first = (str(exc).splitlines() or [""])[0][:300]
            return ProofResult(theorem=theorem.full_name, uid=theorem.uid, repo=repo, proved=False, checked_by=None,
                               file_path=theorem.file_path, stop_reason="error",
                               error=f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
        if result.proved and self.spec.config.learn_online and hasattr(self.generator, "learn"):
            self.generator.learn([(s, t, ()) for s, t in zip(result.states, result.proof)])
        return result


def auto_workers(tasks: int) -> int:
    """Workers sized to the machine: CPUs available to us, RAM / per-worker share, and the number of tasks."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = cpus * WORKER_MEMORY_BYTES
    return max(1, min(cpus, mem // WORKER_MEMORY_BYTES, tasks))


# -- local process pool --------------------------------------------------------------------------------------
_WORKER: ProverWorker | None = None


def _init_process(spec: WorkerSpec) -> None:
    """Worker start-up: ignore Ctrl-C (the parent stops us), one thread each, build the prover once."""
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    _WORKER = ProverWorker(spec)


def _prove_in_process(repo: str, theorem: Theorem) -> ProofResult:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.prove(repo, theorem)


def _pid_exists(pid: int | None) -> bool:
    """Whether a process still exists. `Process.is_alive()` can stay True for a worker that the executor's
    manager thread reaped concurrently (its `waitpid` then fails in ours), so ask the OS."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_executor(executor: ProcessPoolExecutor, preexisting: set) -> None:
    """Cancel queued tasks and terminate the workers: every multiprocessing child started since the pool
    was made. The executor's own list is not enough: Ctrl-C can land while `submit` is starting a worker,
    before the executor has recorded it (seen under load)."""
    seen = {id(p): p for p in (getattr(executor, "_processes", None) or {}).values()}
    executor.shutdown(wait=False, cancel_futures=True)
    for _ in range(3):
        seen.update({id(p): p for p in (getattr(executor, "_processes", None) or {}).values()})
        seen.update({id(p): p for p in multiprocessing.active_children() if p not in preexisting})
        alive = [p for p in seen.values() if p.is_alive() and _pid_exists(p.pid)]
        if not alive:
            return
        for proc in alive:
            proc.terminate()
        for proc in alive:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)


def _run_processes(tasks: Sequence[Task], spec: WorkerSpec, workers: int) -> Iterator[ProofResult]:
    ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
    preexisting = set(multiprocessing.active_children())
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_process,
                                   initargs=(spec.portable(),))
    pending: set[Future] = set()
    try:
        pending = {executor.submit(_prove_in_process, repo, thm) for repo, thm in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
    except BaseException:
        _stop_executor(executor, preexisting)
        raise
    executor.shutdown(wait=True)


# -- Ray -----------------------------------------------------------------------------------------------------
def driver_paths(spec: WorkerSpec) -> list[str]:
    """Paths the driver put in the spec that every Ray node must see (bank, premise store, model)."""
    gen = spec.generator
    paths = [gen.bank_path, gen.store_path if not gen.chroma_url else None]
    model = gen.config.model
    if model and (os.path.isabs(model) or model.startswith(".")):
        paths.append(model)
    return [str(p) for p in paths if p is not None]


def missing_paths(spec: WorkerSpec) -> str | None:
    """One line naming the driver paths this node cannot see, or None (cluster mode's shared filesystem)."""
    missing = [p for p in driver_paths(spec) if not os.path.exists(p)]
    if not missing:
        return None
    return (f"Ray node {os.uname().nodename} cannot see {', '.join(missing)}: cluster mode needs the workspace on "
            "a filesystem every node mounts at the same path (or the premise store on a chroma server, "
            "[memory] chroma_url)")


def gpus_per_actor(config: ProverConfig, cluster_gpus: float) -> float:
    """GPUs a Ray actor asks for: an in-process vLLM engine needs `tensor_parallel_size`; an `hf` model one
    when the cluster has GPUs (it runs on CUDA there); everything else none."""
    if config.generator == "vllm" and not config.vllm_url:
        if cluster_gpus < config.tensor_parallel_size:
            from common.errors import InputError

            raise InputError(f"the in-process vLLM engine needs {config.tensor_parallel_size} GPU(s) per Ray actor; "
                             f"the cluster has {cluster_gpus:g}; or set prover.vllm_url to a `vllm serve` server")
        return float(config.tensor_parallel_size)
    if config.generator == "hf" and cluster_gpus >= 1:
        return 1.0
    return 0.0


def _run_ray(tasks: Sequence[Task], spec: WorkerSpec, workers: int, address: str) -> Iterator[ProofResult]:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        from common.errors import InputError

        raise InputError("--ray needs Ray: pip install 'lifelean[cluster]'") from None
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address == "local":
            ray.init(num_cpus=workers, _node_ip_address="127.0.0.1", include_dashboard=False,
                     log_to_driver=False, runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    actors: list = []
    try:
        gpus = gpus_per_actor(spec.config, float(ray.cluster_resources().get("GPU", 0)))
        actor_cls = ray.remote(num_cpus=1, num_gpus=gpus)(_RayWorker)
        spec_ref = ray.put(spec.portable())   # serialised once, not once per actor
        actors = [actor_cls.remote(spec_ref) for _ in range(workers)]
        for problem in ray.get([a.problem.remote() for a in actors]):
            if problem:
                from common.errors import InputError

                raise InputError(problem)
        pool = ActorPool(actors)
        yield from pool.map_unordered(lambda actor, task: actor.prove.remote(*task), list(tasks))
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()


class _RayWorker:
    """A Ray actor holding one :class:`ProverWorker` (one model copy per actor).

    A node that cannot see the driver's paths records why instead of failing inside a constructor, so the
    driver can say it in one line (`problem`)."""

    def __init__(self, spec: WorkerSpec):
        self._problem = missing_paths(spec)
        if self._problem is None:
            _init_process(spec)

    def problem(self) -> str | None:
        return self._problem

    def prove(self, repo: str, theorem: Theorem) -> ProofResult:
        return _prove_in_process(repo, theorem)


def prove_many(tasks: Sequence[Task], spec: WorkerSpec, workers: int | None = None, ray_address: str | None = None,
               worker: ProverWorker | None = None) -> Iterator[ProofResult]:
    """Prove every (repo, theorem) task; yields results as they finish (order may differ from `tasks`).

    `workers` = 1 runs here (reusing `worker` when given); more uses a spawn process pool; 0/None sizes it to the
    machine; `ray_address` ('local', 'auto' or host:port) uses Ray actors through `ray.util.ActorPool` instead.
    """
    tasks = list(tasks)
    if not tasks:
        return
    n = spec.config.workers if workers is None else workers
    n = auto_workers(len(tasks)) if n == 0 else min(n, len(tasks))
    cfg = spec.config
    if n > 1 and not ray_address and cfg.generator == "vllm" and not cfg.vllm_url:
        warnings.warn(f"an in-process vLLM engine holds the GPU: proving with 1 worker instead of {n}; for parallel "
                      "workers start `vllm serve MODEL` and set prover.vllm_url", UserWarning, stacklevel=2)
        n = 1
    if ray_address:
        yield from _run_ray(tasks, spec, n, ray_address)
    elif n <= 1:
        local = worker or ProverWorker(spec)
        for repo, thm in tasks:
            yield local.prove(repo, thm)
    else:
        yield from _run_processes(tasks, spec, n)
