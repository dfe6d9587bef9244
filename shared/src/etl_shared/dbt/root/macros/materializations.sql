{#-
  The platform's own `table`, `incremental` and `seed` materializations (docs/cockroachdb.md,
  "Table models without RENAME"). dbt's build a table under another name and swap it in with
  ALTER TABLE ... RENAME (CockroachDB checks CREATE on the *database* for a rename; the zone roles
  hold CREATE on their schema only), build incremental runs through a TEMPORARY table (a preview
  feature on CockroachDB, refused unless the session enables it) and drop and recreate seeds. Here:

    - a table is created once, with its primary key declared (the model's `unique_key`: CockroachDB
      gives a table without one a hidden, sequential `rowid` key, so all inserts hit one range), and
      its indexes; it is never renamed;
    - later runs of a `table` model replace its rows in one implicit transaction (DELETE, then
      INSERT from the model's query, sent as one statement batch): readers such as Qlik see the old
      rows or the new, never a missing or empty table; grants, indexes and the key stay;
    - incremental runs write from the model's query directly, in one statement (INSERT ... ON
      CONFLICT on the primary key for `history`, `upsert` and `delete+insert`, INSERT for
      `append`): no temporary table;
    - seeds are created once with their primary key, and reloaded by DELETE and INSERT in one
      statement batch;
    - the table is rebuilt (dropped and created again) only when the model's columns, their types
      or its key changed, or on --full-refresh.
  The DDL runs only when a table is created or rebuilt, so a run of unchanged models sends no schema
  change at all.
-#}

{#- The model's primary key: its unique_key, as a list. Every table needs one. -#}
{% macro etl_primary_key() -%}
{%- set key = config.get('unique_key') -%}
{%- if key is none or key == [] or key == '' -%}
    {{ exceptions.raise_compiler_error(
        model.resource_type ~ " '" ~ model.name ~ "' (" ~ model.original_file_path ~ ") has no primary key: set"
        ~ " unique_key in its config to the column(s) that identify a row. Every table the platform"
        ~ " creates declares its primary key (docs/cockroachdb.md).") }}
{%- endif -%}
{{ return([key] if key is string else key) }}
{%- endmacro %}

{#- The columns of the existing table's primary key, in key order (CockroachDB: `rowid` for a table
    created without one). -#}
{% macro etl_primary_key_of(relation) -%}
{%- set found = run_query(
    "select kcu.column_name from information_schema.table_constraints as tc"
    ~ " join information_schema.key_column_usage as kcu on kcu.constraint_schema = tc.constraint_schema"
    ~ " and kcu.constraint_name = tc.constraint_name and kcu.table_name = tc.table_name"
    ~ " where tc.constraint_type = 'PRIMARY KEY' and tc.table_schema = '" ~ relation.schema ~ "'"
    ~ " and tc.table_name = '" ~ relation.identifier ~ "' order by kcu.ordinal_position"
) -%}
{{ return(found.columns[0].values() | list) }}
{%- endmacro %}

{#- The statements that create the table of a model from its query, with its primary key, as a list:
    the DDL to run first (may be empty), and the main statement. `replace`: the existing table is
    dropped first.
      - A model with an enforced contract: CREATE TABLE with the contract's columns, types and
        constraints and the primary key (dbt's check that the query matches the contract first),
        then INSERT from the query.
      - Otherwise, on CockroachDB one CREATE TABLE ... AS, whose column list takes PRIMARY KEY;
        PostgreSQL has no such form, and no rowid either: CREATE TABLE ... AS and ADD PRIMARY KEY in
        one statement batch, so one transaction. -#}
{% macro etl_create_table_statements(relation, sql, keys, replace=false) -%}
{%- set drop = 'drop table if exists ' ~ relation ~ ' cascade;\n' if replace else '' -%}
{%- set contract = config.get('contract') -%}
{%- if contract and contract.enforced -%}
    {{- get_assert_columns_equivalent(sql) -}}
    {%- set columns = adapter.render_raw_columns_constraints(raw_columns=model['columns']) -%}
    {%- set constraints = adapter.render_raw_model_constraints(raw_constraints=model['constraints']) -%}
    {%- set has_key = 'primary key' in ((columns + constraints) | join(' ') | lower) -%}
    {%- set definitions = columns + constraints + ([] if has_key else ['primary key (' ~ get_quoted_csv(keys) ~ ')']) -%}
    {%- set names = get_quoted_csv(model['columns'].values() | map(attribute='name')) -%}
    {%- set ddl = drop ~ 'create table ' ~ relation ~ ' (\n    ' ~ definitions | join(',\n    ') ~ '\n)' -%}
    {%- set main = 'insert into ' ~ relation ~ ' (' ~ names ~ ')\nselect ' ~ names ~ ' from (\n' ~ sql ~ '\n) as etl_model_rows' -%}
    {{ return([ddl, main]) }}
{%- elif var('is_cockroachdb', false) -%}
    {%- set columns = get_columns_in_query(sql) -%}
    {%- set main -%}
{{ drop }}create table {{ relation }} (
    {%- for column in columns %}{{ adapter.quote(column) }}, {% endfor -%}
    primary key ({{ get_quoted_csv(keys) }})
) as
select * from (
{{ sql }}
) as etl_model_rows
    {%- endset -%}
    {{ return(['', main]) }}
{%- else -%}
    {%- set main -%}
{{ drop }}create table {{ relation }} as
select * from (
{{ sql }}
) as etl_model_rows;
alter table {{ relation }} add primary key ({{ get_quoted_csv(keys) }})
    {%- endset -%}
    {{ return(['', main]) }}
{%- endif -%}
{%- endmacro %}

{#- Creates the model's table (see etl_create_table_statements), its indexes, and logs why. -#}
{% macro etl_create_table(relation, sql, keys, replace, reason) -%}
{%- do log("etl: " ~ relation ~ " is created (" ~ reason ~ ")", info=true) -%}
{%- set statements = etl_create_table_statements(relation, sql, keys, replace) -%}
{%- if statements[0] -%}{%- do run_query(statements[0]) -%}{%- endif -%}
{% call statement('main') -%}
{{ statements[1] }}
{%- endcall %}
{%- do create_indexes(relation) -%}
{%- endmacro %}

{#- Makes `keys` the primary key of an existing table (a table an earlier release created without
    one, or with another): one ALTER TABLE; nothing when it already is. -#}
{% macro etl_ensure_primary_key(relation, keys) -%}
{%- set current = etl_primary_key_of(relation) -%}
{%- if current != keys -%}
    {%- do log("etl: " ~ relation ~ ": primary key (" ~ current | join(', ') ~ ") becomes (" ~ keys | join(', ') ~ ")", info=true) -%}
    {%- if var('is_cockroachdb', false) -%}
        {%- do run_query("alter table " ~ relation ~ " alter primary key using columns (" ~ get_quoted_csv(keys) ~ ")") -%}
    {%- elif current -%}
        {%- set name = run_query(
            "select constraint_name from information_schema.table_constraints where constraint_type = 'PRIMARY KEY'"
            ~ " and table_schema = '" ~ relation.schema ~ "' and table_name = '" ~ relation.identifier ~ "'"
        ).columns[0].values()[0] -%}
        {%- do run_query("alter table " ~ relation ~ " drop constraint " ~ adapter.quote(name) ~ ", add primary key (" ~ get_quoted_csv(keys) ~ ")") -%}
    {%- else -%}
        {%- do run_query("alter table " ~ relation ~ " add primary key (" ~ get_quoted_csv(keys) ~ ")") -%}
    {%- endif -%}
{%- endif -%}
{%- endmacro %}

{#- Why the existing table cannot take the model's rows as they are, or none: other column names or
    order, other column types (as the driver reports them), another primary key. `wanted`: the
    query's columns (get_column_schema_from_query). -#}
{% macro etl_shape_change(relation, wanted, keys) -%}
{%- set have = get_column_schema_from_query('select * from ' ~ relation) -%}
{%- set wanted_names = wanted | map(attribute='name') | list -%}
{%- set have_names = have | map(attribute='name') | list -%}
{%- if wanted_names != have_names -%}
    {{ return('columns (' ~ have_names | join(', ') ~ ') become (' ~ wanted_names | join(', ') ~ ')') }}
{%- endif -%}
{%- for column in wanted -%}
    {%- if column.dtype != have[loop.index0].dtype -%}
        {{ return('column ' ~ column.name ~ ' changes type from ' ~ have[loop.index0].dtype ~ ' to ' ~ column.dtype) }}
    {%- endif -%}
{%- endfor -%}
{%- set current = etl_primary_key_of(relation) -%}
{%- if current != keys -%}
    {{ return('primary key (' ~ current | join(', ') ~ ') becomes (' ~ keys | join(', ') ~ ')') }}
{%- endif -%}
{{ return('') }}
{%- endmacro %}

{% materialization table, adapter='postgres' %}
  {%- set keys = etl_primary_key() -%}
  {%- set existing = load_cached_relation(this) -%}
  {%- set target = this.incorporate(type='table') -%}
  {%- set grant_config = config.get('grants') -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {%- set reason = '' -%}
  {%- if existing is none -%}
    {%- set reason = 'new table' -%}
  {%- elif not existing.is_table -%}
    {%- set reason = 'replaces a ' ~ existing.type -%}
  {%- elif should_full_refresh() -%}
    {%- set reason = 'full refresh' -%}
  {%- else -%}
    {#- the query's columns, read once: the shape check and the INSERT's column list -#}
    {%- set wanted = get_column_schema_from_query(sql) -%}
    {%- set reason = etl_shape_change(existing, wanted, keys) -%}
  {%- endif -%}

  {% if reason %}
    {%- if existing is not none and existing.is_view -%}{{ drop_relation_if_exists(existing) }}{%- endif -%}
    {%- do etl_create_table(target, sql, keys, existing is not none and existing.is_table, reason) -%}
  {% else %}
    {% call statement('main') -%}
      {{ etl_replace_rows(target, sql, wanted | map(attribute='name') | list) }}
    {%- endcall %}
  {% endif %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do apply_grants(target, grant_config, should_revoke=should_revoke(existing, full_refresh_mode=True)) %}
  {% do persist_docs(target, model) %}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}
  {{ return({'relations': [target]}) }}
{% endmaterialization %}

{#- A table model's rows replaced: one statement batch, so one implicit transaction on PostgreSQL
    and CockroachDB (since v22.1 CockroachDB runs a batch of statements in one implicit transaction,
    as PostgreSQL does). A model with meta etl_replace = 'truncate' (the validated models: only the
    job reads them) empties the table with TRUNCATE on PostgreSQL, where a DELETE of the 2.2 million
    rows a full build left cost the next run 4-15 s (bench/README.md); TRUNCATE holds an exclusive
    lock until the commit, so readers wait instead of reading the old rows. CockroachDB always
    DELETEs: its TRUNCATE is a schema change. -#}
{% macro etl_replace_rows(relation, sql, columns) -%}
{%- set names = get_quoted_csv(columns) -%}
{%- if config.get('meta', {}).get('etl_replace') == 'truncate' and not var('is_cockroachdb', false) -%}
truncate table {{ relation }};
{%- else -%}
delete from {{ relation }};
{%- endif %}
insert into {{ relation }} ({{ names }})
select {{ names }} from (
{{ sql }}
) as etl_model_rows
{%- endmacro %}

{% materialization incremental, adapter='postgres' -%}
  {%- set keys = etl_primary_key() -%}
  {%- set existing = load_cached_relation(this) -%}
  {%- set target = this.incorporate(type='table') -%}
  {%- set grant_config = config.get('grants') -%}
  {%- set full_refresh_mode = should_full_refresh() or (existing is not none and not existing.is_table) -%}
  {%- set on_schema_change = incremental_validate_on_schema_change(config.get('on_schema_change'), default='ignore') -%}
  {%- set strategy = config.get('incremental_strategy') or 'default' -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% if existing is none or full_refresh_mode %}
    {%- if existing is not none and existing.is_view -%}{{ drop_relation_if_exists(existing) }}{%- endif -%}
    {%- do etl_create_table(target, sql, keys, existing is not none and existing.is_table, 'new table' if existing is none else 'full refresh') -%}
  {% else %}
    {% do etl_ensure_primary_key(existing, keys) %}
    {%- set dest_columns = adapter.get_columns_in_relation(existing) -%}
    {%- set query_names = get_columns_in_query(sql) -%}
    {%- set table_names = dest_columns | map(attribute='name') | list -%}
    {%- if (query_names | sort) != (table_names | sort) -%}
      {%- set change = 'the query has (' ~ query_names | join(', ') ~ '), the table (' ~ table_names | join(', ') ~ ')' -%}
      {%- if on_schema_change == 'fail' -%}
        {{ exceptions.raise_compiler_error("model '" ~ model.name ~ "': the columns changed (on_schema_change='fail'): " ~ change ~ ". Deploy the change with a migration, or rebuild the model with --full-refresh where its input allows it.") }}
      {%- elif on_schema_change != 'ignore' -%}
        {{ exceptions.raise_compiler_error("model '" ~ model.name ~ "': on_schema_change='" ~ on_schema_change ~ "' is not supported (it alters the table during a run); use 'fail' or 'ignore'. " ~ change) }}
      {%- endif -%}
      {%- set dest_columns = dest_columns | selectattr('name', 'in', query_names) | list -%}
    {%- endif -%}
    {%- set strategy_macro = adapter.get_incremental_strategy_macro(context, strategy) -%}
    {%- set source = '(\n' ~ sql ~ '\n) as etl_model_rows' -%}
    {%- set arg_dict = {
        'target_relation': target, 'temp_relation': source, 'unique_key': keys,
        'dest_columns': dest_columns, 'incremental_predicates': config.get('incremental_predicates', none),
    } -%}
    {% call statement('main') -%}
      {{ strategy_macro(arg_dict) }}
    {%- endcall %}
  {% endif %}

  {% do apply_grants(target, grant_config, should_revoke=should_revoke(existing, full_refresh_mode)) %}
  {% do persist_docs(target, model) %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}
  {{ return({'relations': [target]}) }}
{%- endmaterialization %}

{#- The incremental strategies without a temporary table: `temp_relation` is the model's query as a
    subquery (see the incremental materialization above). -#}

{#- append: the query's rows inserted (a row whose key is there already fails the model). -#}
{% macro get_incremental_append_sql(arg_dict) -%}
{%- set names = get_quoted_csv(arg_dict["dest_columns"] | map(attribute="name")) -%}
insert into {{ arg_dict["target_relation"] }} ({{ names }})
select {{ names }} from {{ arg_dict["temp_relation"] }}
{%- endmacro %}

{#- delete+insert: with the primary key on unique_key a key has at most one row, so deleting the
    query's keys and inserting its rows is an upsert: one statement that evaluates the query once
    (two statements would evaluate it twice, the second time after the delete changed what it
    reads). Rows of keys the query does not return stay; a model that must remove rows deletes them
    in a pre-hook. -#}
{% macro get_incremental_delete_insert_sql(arg_dict) -%}
{{ etl_platform.upsert_sql(arg_dict["target_relation"], arg_dict["temp_relation"], arg_dict["dest_columns"], arg_dict["unique_key"]) }}
{%- endmacro %}

{% macro get_incremental_default_sql(arg_dict) -%}
{{ get_incremental_append_sql(arg_dict) }}
{%- endmacro %}

{#- Seeds: created once with their primary key (unique_key in the seed's config), reloaded in place.
    dbt's seed materialization truncates (a schema change on CockroachDB) or drops and recreates. -#}
{% materialization seed, adapter='postgres' %}
  {%- set keys = etl_primary_key() -%}
  {%- set full_refresh_mode = should_full_refresh() -%}
  {%- set existing = adapter.get_relation(database=database, schema=schema, identifier=model['alias']) -%}
  {%- set target = this.incorporate(type='table') -%}
  {%- set agate_table = load_agate_table() -%}
  {%- do store_result('agate_table', response='OK', agate_table=agate_table) -%}
  {%- set grant_config = config.get('grants') -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {%- set create = existing is none or full_refresh_mode or not existing.is_table -%}
  {%- if not create -%}
    {%- set have = adapter.get_columns_in_relation(existing) | map(attribute='name') | list -%}
    {%- set create = have != (agate_table.column_names | list) or etl_primary_key_of(existing) != keys -%}
  {%- endif -%}
  {%- if create -%}
    {%- if existing is not none -%}{% do adapter.drop_relation(existing) %}{%- endif -%}
    {%- do log("etl: seed " ~ target ~ " is created", info=true) -%}
    {% call statement('_') -%}
      {{ etl_seed_create_sql(agate_table, keys) }}
    {%- endcall %}
    {% do create_indexes(target) %}
  {%- endif -%}

  {%- set rows = agate_table.rows | length -%}
  {%- set cols_sql = get_seed_column_quoted_csv(model, agate_table.column_names) -%}
  {%- set bindings = [] -%}
  {%- for row in agate_table.rows -%}{%- do bindings.extend(row) -%}{%- endfor -%}
  {% set load_sql -%}
    delete from {{ target }};
    {%- if rows > 0 %}
    insert into {{ target }} ({{ cols_sql }}) values
    {%- for row in agate_table.rows %}
      ({%- for column in agate_table.column_names -%}{{ get_binding_char() }}{{ "," if not loop.last }}{%- endfor -%}){{ "," if not loop.last }}
    {%- endfor %}
    {%- endif %}
  {%- endset %}
  {% do adapter.add_query(load_sql, bindings=bindings, abridge_sql_log=True) %}

  {% call noop_statement('main', 'INSERT ' ~ rows, 'INSERT', rows) %}
    {{ load_sql }}
  {% endcall %}

  {% do apply_grants(target, grant_config, should_revoke=should_revoke(existing, full_refresh_mode)) %}
  {% do persist_docs(target, model) %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}
  {{ return({'relations': [target]}) }}
{% endmaterialization %}

{% macro etl_seed_create_sql(agate_table, keys) -%}
{%- set column_override = model['config'].get('column_types', {}) -%}
{%- set quote_seed_column = model['config'].get('quote_columns', None) -%}
create table {{ this.render() }} (
    {%- for col_name in agate_table.column_names %}
    {{ adapter.quote_seed_column(col_name | string, quote_seed_column) }} {{ column_override.get(col_name, adapter.convert_type(agate_table, loop.index0)) }},
    {%- endfor %}
    primary key ({{ get_quoted_csv(keys) }})
)
{%- endmacro %}
