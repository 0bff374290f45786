"""Start the app (`python app.py`) in a process of its own on a free port and wait until it answers:
for the browser tests and the load script.

    with running_app("--checkpoint", "runs/tiny") as app:
        ...  # app.url, app.process (its pid for memory readings), app.log
"""

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunningApp:
    url: str  # http://127.0.0.1:PORT/
    process: subprocess.Popen
    log: Path  # the app's output


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(*args: str, log: str | os.PathLike | None = None, timeout_s: float = 180) -> Iterator[RunningApp]:
    """Run `python app.py --port P *args` (P a free port) and yield it once its page answers;
    stop it on leaving. Its output goes to `log` (default: a new temporary file), whose end is
    quoted when the app exits or does not answer within `timeout_s`."""
    if log is None:
        handle, log = tempfile.mkstemp(prefix="vitviz-app-", suffix=".log")
        os.close(handle)
    log = Path(log)
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *args], cwd=REPO, stdout=out,
                                   stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with {process.returncode} ({log}):\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"app.py did not answer in {timeout_s:g} s ({log}):\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield RunningApp(url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
