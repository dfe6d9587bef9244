"""Running the real entrypoints as an operator does: subprocesses of the installed console scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run_entrypoint(
    program: str, *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``program args`` (etl-staging, etl-conformed...) with only ``env`` and PATH/HOME, as a
    container or Control-M starts it."""
    base = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
    return subprocess.run(
        [str(BIN / program), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
