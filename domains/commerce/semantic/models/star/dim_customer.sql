-- Customer dimension, history-aware: one row per version of a customer (conformed.customer_history,
-- deletes excluded), so that a fact links to the version valid when the order was placed (a customer
-- who moved is reported under the old country before the move and the new one after). Personal data
-- is masked (macros/pii.sql). The only field shared with facts is customer_key; every other field
-- carries the customer_ prefix so that Qlik builds no synthetic keys.
{{ config(materialized='table', unique_key='customer_key') }}

with versions as (
    select *
    from {{ source('conformed', 'customer_history') }}
    where change_type <> 'delete'
),

current_customers as (
    select
        customer_id,
        crm_account_id,
        crm_industry,
        is_deleted
    from {{ source('conformed', 'customer') }}
),

known as (
    select
        {{ etl_platform.surrogate_key(['versions.version_id']) }} as customer_key,
        versions.customer_id,
        {{ etl_platform.pii_hash('versions.email', 'customer_email') }} as customer_email,
        {{ etl_platform.pii_redact('versions.first_name', 'customer_name') }} as customer_name,
        coalesce(versions.country_code, 'ZZ') as customer_country_code,
        current_customers.crm_account_id as customer_crm_account_id,
        current_customers.crm_industry as customer_crm_industry,
        versions.created_at as customer_created_at,
        versions.valid_from as customer_valid_from,
        versions.valid_to as customer_valid_to,
        versions.is_current as customer_is_current,
        coalesce(current_customers.is_deleted, false) as customer_is_deleted,
        row_number() over (partition by versions.customer_id order by versions.valid_from nulls last) as customer_version
    from versions
    left join current_customers on versions.customer_id = current_customers.customer_id
),

unknown as (
    select
        {{ etl_platform.unknown_key() }} as customer_key,
        -1::bigint as customer_id,
        null::text as customer_email,
        'Unknown customer' as customer_name,
        'ZZ' as customer_country_code,
        null::text as customer_crm_account_id,
        null::text as customer_crm_industry,
        null::timestamptz as customer_created_at,
        null::timestamptz as customer_valid_from,
        null::timestamptz as customer_valid_to,
        true as customer_is_current,
        false as customer_is_deleted,
        1::bigint as customer_version
)

select * from known
union all
select * from unknown
