"""Run many jobs (one training or scoring each) on this machine or a SLURM cluster, through submitit.

The same call runs a job as a local subprocess (--executor local, at most --jobs at a time, the cores split
between them) or as a SLURM job (--executor slurm, --partition, --gpus, --time; --jobs SLURM jobs at a time).
Each job's output goes to its own log file. The study (sweep.py) and the extrapolation (extrapolate.py)
both use it:

    python experiments/sweep.py --study --executor slurm --partition gpu --gpus 1 --time 120 --jobs 20
"""

import argparse
import contextlib
import importlib
import os
import sys
import time
from pathlib import Path

import submitit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # experiments/ run as scripts import the project's modules from its root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that say where and how many jobs run."""
    parser.add_argument(
        "--executor", choices=("local", "slurm"), default="local", help="where jobs run (default: here)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="jobs at a time; locally the cores are split between them")
    parser.add_argument("--threads", type=int, help="threads per job (default: the cores split between --jobs)")
    parser.add_argument("--partition", help="SLURM partition")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs per SLURM job (default 0)")
    parser.add_argument("--time", type=int, default=24 * 60, help="time limit per job, minutes (default 1440)")


def run_job(module: str, function: str, log: str, threads: int, *args):
    """What a job runs: module.function(*args) with `threads` threads, its output into the file `log`."""
    import torch

    torch.set_num_threads(threads)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        return getattr(importlib.import_module(module), function)(*args)


def run_jobs(calls: list[tuple[str, str, str, tuple]], args: argparse.Namespace, folder: Path, on_done=None) -> list:
    """Run each (module, function, log file, arguments) as one job; returns their results in order, None for
    a job that failed (its log says why). on_done(index, result) is called as each job finishes."""
    if args.jobs < 1:
        raise ValueError("--jobs must be >= 1")
    threads = args.threads or (max(1, (os.cpu_count() or 1) // args.jobs) if args.executor == "local" else 1)
    executor = submitit.AutoExecutor(folder=folder / "submitit", cluster=args.executor)
    executor.update_parameters(timeout_min=args.time, cpus_per_task=threads)
    if args.executor == "slurm":
        executor.update_parameters(slurm_partition=args.partition, gpus_per_node=args.gpus)
    path = os.pathsep.join([str(ROOT), str(ROOT / "experiments"), os.environ.get("PYTHONPATH", "")])
    os.environ |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": path}  # jobs inherit
    results, running, todo = [None] * len(calls), {}, list(enumerate(calls))
    while todo or running:
        while todo and len(running) < args.jobs:  # start jobs until --jobs run
            index, (module, function, log, call_args) = todo.pop(0)
            running[index] = executor.submit(run_job, module, function, log, threads, *call_args)
        time.sleep(1)
        for index, job in [(i, j) for i, j in running.items() if j.done()]:
            del running[index]
            try:
                results[index] = job.result()
            except Exception as err:  # the job's own log holds the traceback
                print(f"!! job {index} failed ({type(err).__name__}); see {calls[index][2]}", flush=True)
            if on_done:
                on_done(index, results[index])
    return results
