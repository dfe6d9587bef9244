-- Customer from the OLTP system: trimmed lower-case email, ISO 3166 alpha-2 country code (from a
-- code in any case or an English name), one row per customer_id (the latest update wins).

with customers as (
    select * from {{ ref('base_oltp__customers') }}
),

country_names as (
    select * from {{ ref('country_names') }}
),

standardised as (
    select
        customers.customer_id,
        lower(trim(customers.email)) as email,
        trim(customers.first_name) as first_name,
        trim(customers.last_name) as last_name,
        customers.phone,
        coalesce(
            case when length(trim(customers.country)) = 2 then upper(trim(customers.country)) end,
            country_names.country_code
        ) as country_code,
        customers.created_at,
        customers.updated_at,
        customers.pull_id,
        customers.run_id
    from customers
    left join country_names on lower(trim(customers.country)) = country_names.country_name_lower
),

ranked as (
    select
        standardised.*,
        row_number() over (partition by customer_id order by updated_at desc nulls last) as recency
    from standardised
)

select
    customer_id,
    email,
    first_name,
    last_name,
    phone,
    country_code,
    created_at,
    updated_at,
    pull_id,
    run_id
from ranked
where recency = 1
