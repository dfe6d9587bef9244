"""SIGTERM and SIGINT stop a zone job cleanly: exit 143, its job row marked ``cancelled``.

The first signal raises ``KeyboardInterrupt`` in the main thread, wherever it is: that is the one
exception both libraries a job waits in stop for cleanly. psycopg cancels the statement running on
the server (its transaction rolls back) before it re-raises; dbt cancels the queries of all its
threads (``pg_cancel_backend``), waits for them, and returns the interrupt as its result's exception,
which :func:`raise_if_stopped` turns into :class:`JobTerminated` (dbt's own answer would be a failed
build, exit 1). ``run_job`` maps what reaches it with :func:`stop_cause`. A second signal while the
job stops is logged and otherwise ignored, so that the job can still close its row and its leases.

A job's own thread can stop it too (:func:`request_stop`: its zone lease was lost), with the
exception the job should end with.
"""

from __future__ import annotations

import _thread
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from ._errors import EtlError

_log = logging.getLogger(__name__)

#: The signals that stop a job: a container stop or Control-M kill (SIGTERM), Ctrl-C (SIGINT).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_TERMINATED = 143


class JobTerminated(EtlError):
    """The job was stopped by SIGTERM or SIGINT (Control-M kill, container stop, Ctrl-C): a rerun
    builds what it did not (docs/exit-codes.md)."""

    exit_code = EXIT_TERMINATED


@dataclass
class _StopState:
    signum: int | None = None
    #: what the job ends with when its own thread stopped it (request_stop); None: the signal's
    reason: EtlError | None = None
    installed: bool = False
    #: the job's work is over (it succeeded, or its failure is being recorded): a signal now is logged
    #: and ignored, so that the exit code agrees with the job row it writes
    finishing: bool = False


_state = _StopState()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.finishing:
        _log.warning(
            "%s received while the job records its outcome: it finishes as recorded", _signal_name(signum)
        )
        return
    if _state.signum is not None:
        _log.warning("%s received while the job is already stopping: still stopping", _signal_name(signum))
        return
    _state.signum = signum
    if _state.reason is None:
        _log.warning(
            "%s received: stopping the job (running queries are cancelled; the job row is marked cancelled)",
            _signal_name(signum),
        )
    raise KeyboardInterrupt(_signal_name(signum))


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Stop the job on SIGTERM and SIGINT while the block runs (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.signum, _state.reason, _state.finishing = None, None, False
    previous: dict[int, Any] = {sig: signal.signal(sig, _on_signal) for sig in STOP_SIGNALS}
    _state.installed = True
    try:
        yield
    finally:
        _state.installed = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def finishing() -> None:
    """The job's work is over: from now on a stop signal no longer interrupts it (the job row and the
    exit code then say what happened, and they agree)."""
    _state.finishing = True


def stop_requested() -> bool:
    return _state.signum is not None


def request_stop(reason: EtlError) -> None:
    """Stop the job from another of its threads: the main thread is interrupted as by SIGTERM and the
    job ends with ``reason`` (its exit code) rather than 143."""
    if _state.signum is not None or not _state.installed:
        return
    _state.reason = reason
    _log.error("stopping the job: %s", reason)
    _thread.interrupt_main(signal.SIGTERM)


def _terminated(during: str | None = None) -> EtlError:
    if _state.reason is not None:
        return _state.reason
    assert _state.signum is not None
    where = f" during {during}" if during else ""
    return JobTerminated(f"stopped by {_signal_name(_state.signum)}{where}")


def raise_if_stopped(during: str) -> None:
    """Raise what the job ends with if a stop signal arrived (after dbt returned, which keeps it)."""
    if _state.signum is not None:
        raise _terminated(during)


def stop_cause(exc: BaseException) -> BaseException:
    """What a job that raised ``exc`` ends with: the ``KeyboardInterrupt`` a stop signal raised
    becomes :class:`JobTerminated` (or the reason a job's thread gave); anything else stays."""
    if isinstance(exc, KeyboardInterrupt) and _state.signum is not None:
        return _terminated()
    return exc
