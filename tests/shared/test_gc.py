"""The job process and Python's cyclic garbage collector: dbt's import frozen out of its reach, and no
last collection when the process exits (each measured on the conformed benchmark, bench/README.md).

Each check runs in a fresh interpreter: freezing is process-wide, and pytest's own process has long
since imported dbt."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_dbt_is_imported_with_the_collector_paused_then_frozen() -> None:
    out = _python(
        """
        import gc, sys
        from etl_shared._dbt import _import_dbt
        assert "dbt.cli.main" not in sys.modules and gc.get_freeze_count() == 0
        collections = []
        gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info))
        runner = _import_dbt()
        print(runner.__name__, gc.isenabled(), gc.get_freeze_count() > 100_000, len(collections))
        frozen = gc.get_freeze_count()
        assert _import_dbt() is runner and gc.get_freeze_count() == frozen  # imported once, frozen once
        gc.disable()
        _import_dbt()
        print(gc.isenabled())  # the caller's setting is kept
        """
    )
    assert out.split() == ["dbtRunner", "True", "True", "0", "False"]


def test_a_job_process_freezes_what_is_left_when_it_exits() -> None:
    out = _python(
        """
        import atexit, gc
        # registered first, so run last: after the job's own exit handler
        atexit.register(lambda: print("at exit, frozen:", gc.get_freeze_count() > 0))
        from etl_shared._job import _no_final_collection
        print("before, frozen:", gc.get_freeze_count() > 0)
        _no_final_collection()
        _no_final_collection()  # once per process
        """
    )
    assert out.splitlines() == ["before, frozen: False", "at exit, frozen: True"]


def test_a_job_runs_with_its_start_frozen_and_rarer_young_collections_and_cycles_still_go() -> None:
    out = _python(
        """
        import gc, weakref
        from etl_shared._job import JOB_GC_THRESHOLD, _job_collection
        before = gc.get_threshold()

        class Node:
            pass

        with _job_collection():
            print(gc.get_threshold()[0] == JOB_GC_THRESHOLD, gc.get_freeze_count() > 0)
            node = Node()
            node.self = node  # a garbage cycle made during the job
            gone = weakref.ref(node)
            del node
            keep = [[] for _ in range(3 * JOB_GC_THRESHOLD)]  # allocations: young collections run
            print(gone() is None)
        print(gc.get_threshold() == before, gc.get_freeze_count() == 0)
        """
    )
    assert out.split() == ["True", "True", "True", "True", "True"]
