"""``etl lineage RUN_ID``: which pulls fed which conformed and semantic tables and export files.

Read from the audit tables only: ``ops.job_runs`` (the run's jobs), ``staging.pulls`` (the pulls the
run made), ``conformed.consumed_pulls`` (which history model read which pull, in which run),
``ops.lineage_edges`` (each dbt model and its parents, per job) and ``ops.exports`` (the files). A pull
feeds the history model that consumed it, the validated model before it, and everything downstream
of that history model in the edges of the run that consumed it; the exports of that run are listed
when the pull reached a semantic table that export read (the semantic job records an edge from each
table an export read to its file).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from etl_shared import Database

_STAGING_TABLES = {"staging.pulls", "staging.pull_batches", "staging.pull_payloads"}


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def lineage_of(db: Database, run_id: str) -> dict[str, Any]:
    with db.connect(autocommit=True) as conn:
        jobs = conn.execute(
            "select job_id, zone, job_name, status, exit_code, started_at, ended_at from ops.job_runs"
            " where run_id = %s order by started_at",
            (run_id,),
        ).fetchall()
        made = conn.execute(
            "select pull_id, source, entity, status, mode, record_count, committed_at, backfill_from,"
            " backfill_to, run_id from staging.pulls where run_id = %s order by source, entity, started_at",
            (run_id,),
        ).fetchall()
        consumed_here = conn.execute(
            "select pull_id from conformed.consumed_pulls where run_id = %s", (run_id,)
        ).fetchall()
        pull_ids = sorted({row[0] for row in made} | {row[0] for row in consumed_here}, key=str)
        consumptions = conn.execute(
            "select pull_id, consumer, disposition, run_id, note, source, entity from conformed.consumed_pulls"
            " where pull_id = any(%s) order by consumed_at",
            (pull_ids,),
        ).fetchall()
        others = conn.execute(
            "select pull_id, source, entity, status, mode, record_count, committed_at, backfill_from,"
            " backfill_to, run_id from staging.pulls where pull_id = any(%s) and run_id <> %s",
            (pull_ids, run_id),
        ).fetchall()
        runs = sorted({run_id} | {row[3] for row in consumptions})
        edges = conn.execute(
            "select run_id, zone, input_namespace, input_name, output_namespace, output_name"
            " from ops.lineage_edges where run_id = any(%s)",
            (runs,),
        ).fetchall()
        exports = conn.execute(
            "select run_id, zone, kind, path, row_count, sha256 from ops.exports where run_id = any(%s)"
            " order by run_id, kind, path",
            (runs,),
        ).fetchall()

    downstream: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    upstream: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for edge_run, _zone, _ins, iname, _ons, oname in edges:
        downstream[edge_run][iname].add(oname)
        upstream[edge_run][oname].add(iname)
    exports_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for export_run, zone, kind, path, rows, sha in exports:
        exports_of[export_run].append({"zone": zone, "kind": kind, "path": path, "rows": rows, "sha256": sha})

    def fed_by(consumer: str, consumer_run: str) -> set[str]:
        graph = downstream[consumer_run]
        start = {name for name in set(graph) | set(upstream[consumer_run]) if name.split(".")[-1] == consumer}
        seen = set(start)
        todo = list(start)
        while todo:
            for child in graph.get(todo.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        for name in start:  # the validated model that read the pull's batches
            for parent in upstream[consumer_run].get(name, ()):
                if upstream[consumer_run].get(parent, set()) & _STAGING_TABLES:
                    seen.add(parent)
        return seen

    pulls: dict[str, dict[str, Any]] = {}
    for pull_id, source, entity, status, mode, records, committed_at, bf_from, bf_to, made_by in [
        *made,
        *others,
    ]:
        pulls[str(pull_id)] = {
            "pull_id": str(pull_id),
            "source": source,
            "entity": entity,
            "status": status,
            "mode": mode,
            "backfill": {"from": _iso(bf_from), "to": _iso(bf_to)} if bf_from else None,
            "records": records,
            "committed_at": _iso(committed_at),
            "made_by_run": made_by,
            "consumed_by": [],
            "conformed_tables": [],
            "semantic_tables": [],
            "exports": [],
        }
    for pull_id, consumer, disposition, consumer_run, note, source, entity in consumptions:
        item = pulls.setdefault(
            str(pull_id),
            {
                "pull_id": str(pull_id),
                "source": source,
                "entity": entity,
                "status": "deleted by retention",
                "mode": None,
                "backfill": None,
                "records": None,
                "committed_at": None,
                "made_by_run": None,
                "consumed_by": [],
                "conformed_tables": [],
                "semantic_tables": [],
                "exports": [],
            },
        )
        item["consumed_by"].append(
            {"consumer": consumer, "disposition": disposition, "run_id": consumer_run, "note": note}
        )
        if disposition != "processed":
            continue
        tables = fed_by(consumer, consumer_run)
        conformed = {t for t in tables if t.startswith("conformed.")}
        item["conformed_tables"] = sorted(set(item["conformed_tables"]) | conformed)
        semantic = {t for t in tables if t.startswith("semantic.")}
        item["semantic_tables"] = sorted(set(item["semantic_tables"]) | semantic)
        if semantic:
            # an export with lineage edges read only their input tables; one without (an older
            # release) is taken to read the whole semantic zone
            reached = {out for table in semantic for out in downstream[consumer_run].get(table, ())}
            read_by_edges = {out for outs in downstream[consumer_run].values() for out in outs}
            known = {e["path"] for e in item["exports"]}
            item["exports"] += [
                e
                for e in exports_of[consumer_run]
                if e["path"] not in known and (e["path"] in reached or e["path"] not in read_by_edges)
            ]

    return {
        "run_id": run_id,
        "jobs": [
            {
                "job_id": str(job_id),
                "zone": zone,
                "job_name": name,
                "status": status,
                "exit_code": code,
                "started_at": _iso(started),
                "ended_at": _iso(ended),
            }
            for job_id, zone, name, status, code, started, ended in jobs
        ],
        "pulls": sorted(pulls.values(), key=lambda p: (p["source"], p["entity"], p["pull_id"])),
        "edges": [
            {"zone": zone, "input": iname, "output": oname}
            for zone, iname, oname in sorted(
                {(zone, iname, oname) for edge_run, zone, _i, iname, _o, oname in edges if edge_run == run_id}
            )
        ],
        "datasets": [
            {"namespace": namespace, "name": name}
            for namespace, name in sorted(
                {(ins, iname) for edge_run, _z, ins, iname, _o, _n in edges if edge_run == run_id}
                | {(ons, oname) for edge_run, _z, _i, _n, ons, oname in edges if edge_run == run_id}
            )
        ],
        "exports": exports_of.get(run_id, []),
    }


def format_lineage(data: dict[str, Any]) -> str:
    lines = [f"Run {data['run_id']}"]
    if not data["jobs"] and not data["pulls"]:
        lines.append("  nothing recorded for this run id (see `etl history`)")
        return "\n".join(lines) + "\n"
    lines.append("Jobs:")
    for job in data["jobs"]:
        code = "" if job["exit_code"] is None else f" (exit {job['exit_code']})"
        lines.append(f"  {job['zone']:<10} {job['job_name']:<28} {job['status']}{code}")
    lines.append("Pulls:")
    for pull in data["pulls"]:
        backfill = (
            f", backfill {pull['backfill']['from']} .. {pull['backfill']['to']}" if pull["backfill"] else ""
        )
        made = f", made by run {pull['made_by_run']}" if pull["made_by_run"] != data["run_id"] else ""
        lines.append(
            f"  {pull['source']}.{pull['entity']}  pull {pull['pull_id']}  {pull['status']},"
            f" {pull['records'] if pull['records'] is not None else '-'} records{backfill}{made}"
        )
        for use in pull["consumed_by"]:
            lines.append(f"      consumed by {use['consumer']}: {use['disposition']} (run {use['run_id']})")
        if pull["conformed_tables"]:
            lines.append(f"      conformed: {', '.join(pull['conformed_tables'])}")
        if pull["semantic_tables"]:
            lines.append(f"      semantic:  {', '.join(pull['semantic_tables'])}")
        for export in pull["exports"]:
            lines.append(f"      export:    {export['path']}")
    if data["exports"]:
        lines.append("Exports:")
        for export in data["exports"]:
            lines.append(
                f"  {export['kind']:<20} {export['path']}  {export['rows']} rows  sha256 {export['sha256'][:12]}"
            )
    return "\n".join(lines) + "\n"
