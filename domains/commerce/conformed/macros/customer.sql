{#- The customer model's incremental filter (models/conformed/customer.sql says which customers a run
    rewrites): of the current customer versions, those loaded since the customer table's newest
    loaded_at, and those whose email a CRM account or an account's contacts changed since carries. -#}
{% macro customer_inputs_changed(customer_table) -%}
{%- set since = etl_platform.last_loaded_at(customer_table) -%}
(
    history.loaded_at > {{ since }}
    or history.email in (
        select accounts.customer_email
        from {{ ref('crm_account_history') }} as accounts
        where accounts.loaded_at > {{ since }} and accounts.customer_email is not null
        union
        select accounts.customer_email
        from {{ ref('crm_account') }} as accounts
        where
            accounts.customer_email is not null
            and accounts.account_id in (
                select contacts.account_id
                from {{ ref('crm_contact_history') }} as contacts
                where contacts.loaded_at > {{ since }}
            )
    )
)
{%- endmacro %}
