"""Is W&B ready? Says whether you are logged in, which mode a run would use, and how to sync offline runs.

python debug/setup_wandb.py            # report only
python debug/setup_wandb.py --test_run # also write a tiny offline run and show where it went
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path


def run_mode() -> tuple[str, str]:
    """The mode train_lightning.py would give W&B, and why (the same rule as make_loggers)."""
    if "WANDB_MODE" in os.environ:
        return os.environ["WANDB_MODE"], "WANDB_MODE is set"
    if "WANDB_API_KEY" in os.environ:
        return "online", "WANDB_API_KEY is set"
    return "offline", "neither WANDB_API_KEY nor WANDB_MODE is set (these machines may have no network)"


def logged_in() -> bool:
    """True if an API key is in the environment or in ~/.netrc (no network call)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text()


def test_run(folder: Path) -> Path:
    """Log a config, three steps and a summary to an offline run; return its directory."""
    import wandb

    run = wandb.init(project="length-generalization-counting", dir=str(folder), mode="offline", config={"check": 1})
    for step in range(3):
        run.log({"check/value": step * 0.5}, step=step)
    run.summary["check/done"] = True
    run_dir = Path(run.dir).parent
    run.finish()
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test_run", action="store_true", help="write a tiny offline run and print where it is")
    parser.add_argument("--dir", help="where the test run goes (default: a temporary folder)")
    args = parser.parse_args(argv)
    try:
        import wandb
    except ImportError:
        print("wandb is not installed: pip install -r requirements.txt", file=sys.stderr)
        return 1
    mode, why = run_mode()
    print(f"wandb {wandb.__version__}; logged in: {'yes' if logged_in() else 'no'}")
    print(f"a training run would log in mode '{mode}' because {why}")
    print("turn W&B off with WANDB_MODE=disabled, or use --logger tensorboard")
    if args.test_run:
        folder = Path(args.dir or tempfile.mkdtemp(prefix="wandb_check_"))
        run_dir = test_run(folder)
        print(f"test run written to {run_dir}")
        print(f"upload it (and any offline run) with: wandb sync {run_dir}")
    else:
        print("offline runs live in OUTPUT_DIR/wandb/offline-run-*; upload with: wandb sync <that folder>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
