"""One generation: the OLTP database, the CRM files, the web event drops and the FX rates."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ._commerce import Commerce
from ._crm import crm_records
from ._events import EVENT_FIELDS, FORMATS, event_days
from ._files import (
    FX_FILE_NAME,
    atomic_text,
    ecb_history,
    json_line,
    write_bytes_atomically,
    write_events_csv,
    write_events_jsonl,
    write_events_xml,
)
from ._oltp import load_oltp
from ._scale import Scale

_log = logging.getLogger(__name__)

SOURCE_FOLDERS = ("crm", "web_events", "fx")


@dataclass(frozen=True)
class GenerationSummary:
    """What one generation wrote.

    ``counts`` keys: customers, products, orders, order_lines (table ``oltp.<key>``), crm_accounts,
    crm_contacts, crm_opportunities, web_events, web_event_files. ``files`` lists every file written,
    in the order written.
    """

    seed: int
    data_dir: Path
    counts: Mapping[str, int]
    files: tuple[Path, ...]
    crm_dir: Path
    web_events_dir: Path
    web_event_files_by_format: Mapping[str, int]
    fx_file: Path
    fx_fallback_file: Path
    oltp_schema: str = "oltp"


def generate(data_dir: Path, oltp_url: str, *, orders: int = 2000, seed: int = 42) -> GenerationSummary:
    """Generate the reference commerce domain for ``seed`` with ``orders`` orders.

    Rewrites ``<data_dir>/sources/{crm,web_events,fx}`` from scratch and recreates schema ``oltp`` in
    the database at ``oltp_url``. The same seed and size give byte-identical files and identical
    tables.
    """
    scale = Scale(orders)
    commerce = Commerce(seed, scale)
    sources = Path(data_dir) / "sources"
    _log.info("generating seed %d with %d orders", seed, orders)
    counts = load_oltp(oltp_url, commerce)  # first: a wrong URL fails before minutes of file writing

    for folder in SOURCE_FOLDERS:
        if (sources / folder).exists():
            shutil.rmtree(sources / folder)
    files: list[Path] = []
    counts.update(_write_crm(commerce, sources / "crm", files))
    counts["web_events"], by_format = _write_web_events(commerce, sources / "web_events", files)
    counts["web_event_files"] = sum(by_format.values())
    fx_file, fallback = _write_fx(sources / "fx", files)
    return GenerationSummary(
        seed=seed,
        data_dir=Path(data_dir),
        counts=counts,
        files=tuple(files),
        crm_dir=sources / "crm",
        web_events_dir=sources / "web_events",
        web_event_files_by_format={fmt: by_format.get(fmt, 0) for fmt in FORMATS},
        fx_file=fx_file,
        fx_fallback_file=fallback,
    )


def _write_crm(commerce: Commerce, folder: Path, files: list[Path]) -> dict[str, int]:
    names = {"crm_accounts": "accounts", "crm_contacts": "contacts", "crm_opportunities": "opportunities"}
    paths = {key: folder / f"{name}.jsonl" for key, name in names.items()}
    counts = dict.fromkeys(names, 0)
    with contextlib.ExitStack() as stack:
        handles = {key: stack.enter_context(atomic_text(path)) for key, path in paths.items()}
        for records in crm_records(commerce):
            handles["crm_accounts"].write(json_line(records.account))
            for contact in records.contacts:
                handles["crm_contacts"].write(json_line(contact))
            for opportunity in records.opportunities:
                handles["crm_opportunities"].write(json_line(opportunity))
            counts["crm_accounts"] += 1
            counts["crm_contacts"] += len(records.contacts)
            counts["crm_opportunities"] += len(records.opportunities)
    files.extend(paths.values())
    _log.info("wrote CRM files into %s: %s", folder, counts)
    return counts


def _write_web_events(commerce: Commerce, folder: Path, files: list[Path]) -> tuple[int, Counter[str]]:
    """The number of events and of files per format."""
    events = 0
    by_format: Counter[str] = Counter()
    for day in event_days(commerce):
        path = folder / day.format / f"events_{day.day.isoformat()}.{day.format}"
        with atomic_text(path) as handle:
            if day.format == "csv":
                write_events_csv(handle, EVENT_FIELDS, day.events)
            elif day.format == "jsonl":
                write_events_jsonl(handle, day.events)
            else:
                write_events_xml(handle, EVENT_FIELDS, day.events)
        files.append(path)
        by_format[day.format] += 1
        events += len(day.events)
    _log.info("wrote %d web events in %d daily files into %s", events, by_format.total(), folder)
    return events, by_format


def _write_fx(folder: Path, files: list[Path]) -> tuple[Path, Path]:
    history = ecb_history()
    paths = (folder / FX_FILE_NAME, folder / "fallback" / FX_FILE_NAME)
    for path in paths:
        write_bytes_atomically(path, history)
        files.append(path)
    _log.info("wrote the ECB FX history (%d bytes) to %s", len(history), paths[0])
    return paths
