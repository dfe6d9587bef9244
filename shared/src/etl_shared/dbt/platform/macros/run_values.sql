{#-
  The values that change with every run: run_id, job_id (the job's row in ops.job_runs; the conformed
  job's snapshot of the pulls it reads is kept under it, see pulls.sql) and job_started_at (the
  database time when the job began the dbt build: loaded_this_run; nothing is ordered by it).

  The runner passes them as the environment variables ETL_DBT_RUN_ID, ETL_DBT_JOB_ID and
  ETL_DBT_JOB_STARTED_AT, read here only while dbt executes. Passed as --vars they would change dbt's
  vars checksum every run and force a full parse of the project (8 s of every run); read at parse
  time, every file reading them would be parsed again. A var of the same name still wins: unit tests
  and manual runs (`dbt build --vars '{run_id: x}'`) set them that way.
-#}
{% macro run_value(name, default) -%}
{%- set given = var(name, none) -%}
{%- if given is not none -%}
    {{ return(given | string) }}
{%- elif execute -%}
    {{ return(env_var('ETL_DBT_' ~ (name | upper), default)) }}
{%- else -%}
    {{ return(default) }}
{%- endif -%}
{%- endmacro %}

{#- A run value as a quoted SQL string literal. -#}
{% macro run_value_literal(name, default) -%}
'{{ etl_platform.run_value(name, default) | replace("'", "''") }}'
{%- endmacro %}

{#- This run's id as a SQL string literal. -#}
{% macro run_id_literal() -%}
{{ etl_platform.run_value_literal('run_id', 'manual') }}
{%- endmacro %}

{#- Rows this run wrote: their loaded_at is at or after the job's start (the run value job_started_at,
    the database's clock when the job began; without it, in a manual run, every row), less 5 seconds:
    ten times CockroachDB's default maximum clock offset between nodes (500 ms), as the row's
    timestamp may come from another node than the start's. Rows an earlier run wrote within those
    seconds are checked again, harmlessly. (The margin was a minute: a run started right after the
    previous one, as in the conformed benchmark, then tested the 2.2 million order lines the previous
    run had just written, 6 s instead of 0.3.) Every history and conformed table has an index on
    loaded_at, so a test of this run's rows reads those rows only, not the whole table. -#}
{% macro loaded_this_run(column='loaded_at') -%}
{{ column }} >= {{ etl_platform.run_value_literal('job_started_at', '1900-01-01T00:00:00+00:00') }}::timestamptz - interval '5 seconds'
{%- endmacro %}

