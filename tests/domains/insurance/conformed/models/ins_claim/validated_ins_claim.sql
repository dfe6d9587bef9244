-- insurance.claims (incremental pulls by updated_at): the records of this run's pulls, typed and checked.
-- Written by etl-conformed scaffold: add the entity's rules to dq_failures and seeds/dq_rules.csv.
{{ etl_platform.validated_config('ins_claim') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }}

with
{{ etl_platform.pull_records('insurance', 'claims', 'ins_claim_history') }},

typed as (
    select
        {{ etl_platform.try_cast(etl_platform.field('branch_code'), 'char(4)') }} as branch_code,
        {{ etl_platform.try_cast(etl_platform.field('policy_no'), 'integer') }} as policy_no,
        {{ etl_platform.try_cast(etl_platform.field('claim_no'), 'integer') }} as claim_no,
        {{ etl_platform.try_cast(etl_platform.field('claim_date'), 'date') }} as claim_date,
        {{ etl_platform.try_cast(etl_platform.field('amount'), 'numeric(15, 2)') }} as amount,
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
            ('ins_claim.key_valid', 'branch_code is not null and policy_no is not null and claim_no is not null'),
            ('ins_claim.amount_valid', 'amount >= 0'),
            ('ins_claim.claim_date_valid', 'claim_date is not null'),
        ]) }} as dq_failed
    from typed
)

select
    branch_code,
    policy_no,
    claim_no,
    claim_date,
    amount,
    updated_at,
    is_deleted,
    {{ etl_platform.dq_columns('checked') }}
from checked
