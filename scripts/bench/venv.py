"""The benchmark venv (.venv-bench): Flower 1.42 with Ray, kept out of the main .venv.

flwr pins its own grpcio/protobuf/Ray stack; keeping it in a separate venv means the project's
environment never depends on it.  Created on first use with `pip install -e .[bench]`, so the
Flower side imports the same fl.client code as the fedchain side.
"""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
PROBE = "import flwr.simulation, fl.client.trainers"


def bench_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure(venv: Path) -> Path:
    """Return the venv's python, creating the venv and installing `.[bench]` if needed."""
    python = bench_python(venv)
    if python.exists() and _works(python):
        return python
    print(f"== creating {venv} with fedchain[bench] (flwr[simulation]==1.42.*), about a minute")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{REPO}[bench]"], check=True, cwd=REPO)
    if not _works(python):
        raise SystemExit(f"{venv}: flwr still not importable after install")
    return python


def _works(python: Path) -> bool:
    probe = subprocess.run([str(python), "-c", PROBE], capture_output=True, cwd=REPO)
    return probe.returncode == 0
