-- insurance.policies (incremental pulls by updated_at): the records of this run's pulls, typed and checked.
-- Written by etl-conformed scaffold: add the entity's rules to dq_failures and seeds/dq_rules.csv.
{{ etl_platform.validated_config('ins_policy') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }}

with
{{ etl_platform.pull_records('insurance', 'policies', 'ins_policy_history') }},

typed as (
    select
        {{ etl_platform.try_cast(etl_platform.field('branch_code'), 'char(4)') }} as branch_code,
        {{ etl_platform.try_cast(etl_platform.field('policy_no'), 'integer') }} as policy_no,
        {{ etl_platform.try_cast(etl_platform.field('holder'), 'char(20)') }} as holder,
        {{ etl_platform.try_cast(etl_platform.field('start_date'), 'date') }} as start_date,
        {{ etl_platform.try_cast(etl_platform.field('premium'), 'numeric(15, 2)') }} as premium,
        {{ etl_platform.try_cast(etl_platform.field('updated_at'), 'timestamptz') }} as updated_at,
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
            ('ins_policy.key_valid', 'branch_code is not null and policy_no is not null'),
            ('ins_policy.premium_valid', 'premium >= 0'),
        ]) }} as dq_failed
    from typed
)

select
    branch_code,
    policy_no,
    holder,
    start_date,
    premium,
    updated_at,
    is_deleted,
    {{ etl_platform.dq_columns('checked') }}
from checked
