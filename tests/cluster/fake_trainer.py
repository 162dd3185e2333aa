"""A stand-in for `python -m services.train ...` in the requeue tests: counts steps, saves, resumes.

usage: fake_trainer.py <state dir> <total steps> [resume=true]
Each step sleeps briefly and saves `step` to <state dir>/step; SIGTERM saves and exits 143 like a trainer that
checkpoints on termination. Every event is appended to <state dir>/events, which the tests read.
"""
import signal
import sys
import time
from pathlib import Path

state, total = Path(sys.argv[1]), int(sys.argv[2])
resume = "resume=true" in sys.argv[3:]
state.mkdir(parents=True, exist_ok=True)
step_file, events = state / "step", state / "events"


def log(line: str) -> None:
    with events.open("a") as f:
        f.write(line + "\n")


step = int(step_file.read_text()) if resume and step_file.exists() else 0
log(f"start resume={resume} step={step} usr2_ignored={signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN}")


def on_term(signum, frame):
    step_file.write_text(str(step))
    log(f"sigterm step={step}")
    sys.exit(143)


signal.signal(signal.SIGTERM, on_term)
while step < total:
    time.sleep(0.4)
    step += 1
    step_file.write_text(str(step))
log(f"done step={step}")
