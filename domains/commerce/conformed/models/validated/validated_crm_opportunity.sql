-- CRM opportunities (crm.opportunities, full pulls from the CRM API) of this run's pull.
{{ etl_platform.validated_config('crm_opportunity') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }} (the post-hooks write the results the
-- threshold test reads: with both as parents, a failing test stops the entity's history)

with
{{ etl_platform.pull_records('crm', 'opportunities', 'crm_opportunity_history', snapshot=true, record_key='opportunity_id') }},

{{ etl_platform.lookup_ctes() }},

-- MATERIALIZED: each typed value is computed once per record; inlined, every rule and output column
-- repeating it would parse the record again (2.7x slower, bench/README.md).
typed as materialized (
    select
        {{ etl_platform.field('opportunity_id') }} as opportunity_id,
        {{ etl_platform.field('account_id') }} as account_id,
        {{ etl_platform.field('name') }} as opportunity_name,
        lower({{ etl_platform.field('stage') }}) as stage,
        {{ etl_platform.try_cast(etl_platform.field('amount'), 'numeric(14, 2)') }} as amount,
        {{ etl_platform.field('amount') }} as amount_raw,
        currency_lookup.currency_code,
        {{ etl_platform.try_cast(etl_platform.field('close_date'), 'date') }} as close_date,
        {{ etl_platform.try_cast(etl_platform.field('updated_at'), 'timestamptz') }} as updated_at,
        {{ etl_platform.deleted_flag() }} as is_deleted,
        {{ etl_platform.record_origin() }},
        pull_records.column_names,
        pull_records.record
    from pull_records
    left join currency_lookup on upper({{ etl_platform.field('currency') }}) = currency_lookup.lookup_key
    where not pull_records.is_unchanged
),

checked as (
    select
        typed.*,
        {{ etl_platform.dq_failures([
            ('crm_opportunity.opportunity_id_present', 'opportunity_id is not null'),
            ('crm_opportunity.amount_valid', 'amount_raw is null or amount >= 0'),
            ('crm_opportunity.currency_iso4217', 'currency_code is not null'),
            ('crm_opportunity.stage_accepted',
                "stage in ('prospecting', 'qualification', 'proposal', 'negotiation', 'closed_won', 'closed_lost')"),
        ]) }} as dq_failed
    from typed
)

{%- set columns = [
    'opportunity_id',
    'account_id',
    'opportunity_name',
    'stage',
    'amount',
    'currency_code',
    'close_date',
    'updated_at',
    'is_deleted',
] %}

select
    {{ columns | join(',\n    ') }},
    {{ etl_platform.dq_columns('checked') }}
from checked
{{ etl_platform.unchanged_records(columns, {'opportunity_id': etl_platform.field('opportunity_id')}) }}
