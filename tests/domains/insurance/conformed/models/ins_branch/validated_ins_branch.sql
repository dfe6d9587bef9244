-- insurance.branches (full pulls): the records of this run's pulls, typed and checked.
-- Written by etl-conformed scaffold: add the entity's rules to dq_failures and seeds/dq_rules.csv.
{{ etl_platform.validated_config('ins_branch') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }}

with
{{ etl_platform.pull_records('insurance', 'branches', 'ins_branch_history', snapshot=true) }},

typed as (
    select
        {{ etl_platform.try_cast(etl_platform.field('branch_code'), 'char(4)') }} as branch_code,
        {{ etl_platform.try_cast(etl_platform.field('branch_name'), 'varchar(40)') }} as branch_name,
        {{ etl_platform.try_cast(etl_platform.field('region'), 'char(2)') }} as region,
        false as is_deleted,
        {{ etl_platform.record_origin() }},
        pull_records.column_names,
        pull_records.record
    from pull_records
),

checked as (
    select
        typed.*,
        {{ etl_platform.dq_failures([
            ('ins_branch.key_valid', 'branch_code is not null'),
        ]) }} as dq_failed
    from typed
)

select
    branch_code,
    branch_name,
    region,
    is_deleted,
    {{ etl_platform.dq_columns('checked') }}
from checked
