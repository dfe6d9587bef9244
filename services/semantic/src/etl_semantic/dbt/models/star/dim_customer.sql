-- Customer dimension for Qlik. The only field shared with facts is customer_key; every other
-- field carries the customer_ prefix so that Qlik builds no synthetic keys.

with customers as (
    select * from {{ source('conformed', 'customer') }}
    where not is_deleted  -- conformed keeps deleted rows, flagged
),

known as (
    select
        {{ surrogate_key(['customer_id']) }} as customer_key,
        customer_id,
        email as customer_email,
        concat_ws(' ', first_name, last_name) as customer_name,
        coalesce(country_code, 'ZZ') as customer_country_code,
        created_at as customer_created_at
    from customers
),

unknown as (
    select
        {{ unknown_key() }} as customer_key,
        -1::bigint as customer_id,
        null::text as customer_email,
        'Unknown customer' as customer_name,
        'ZZ' as customer_country_code,
        null::timestamptz as customer_created_at
)

select * from known
union all
select * from unknown
