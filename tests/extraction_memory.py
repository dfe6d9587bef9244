"""The peak memory of reading one file entity in a fresh interpreter: streaming tests compare a file
with the same file doubled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_SCRIPT = """
import json, re, sys
from pathlib import Path
from etl_staging import Batch, FileExtractor
from etl_staging._config import FileEntity
data_dir, group, batch_size = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
entity = FileEntity.model_validate({"name": "e", "keep_payload": False, "files": [group]})
records = 0
for item in FileExtractor("s", entity, data_dir=data_dir, batch_size=batch_size).extract():
    if isinstance(item, Batch):
        records += len(item.rows)
# the peak RSS of this process image: ru_maxrss would include the parent's at fork (Linux carries the
# high-water mark over exec), so that a large test process would hide any growth
status = Path("/proc/self/status").read_text()
print(records, int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)))
"""


def peak_extraction_kib(data_dir: Path, group: dict[str, Any], batch_size: int = 1000) -> tuple[int, int]:
    """(records read, peak RSS in KiB) of extracting the file group ``group`` below ``data_dir``."""
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(data_dir), json.dumps(group), str(batch_size)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    records, peak = out.split()
    return int(records), int(peak)
