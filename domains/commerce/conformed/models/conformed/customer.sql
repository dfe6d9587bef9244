-- The conformed customer: the current OLTP customer, joined to its CRM account (matched on the
-- trimmed lower-case email the CRM keeps for the customer) and that account's primary contact.
-- Deleted customers are kept with is_deleted = true.
-- Incremental: a run rewrites the customers whose inputs were loaded since the table's newest
-- loaded_at (the newest of the customer's, its account's and its contact's):
--   - customers whose history changed (their current version was loaded since);
--   - customers whose email an account changed carries, before or after the change (the closed
--     version of the account holds the old email), so a match that moved is redone on both sides;
--   - customers matched to an account whose contacts changed (the primary contact may be another).
-- A CRM change that unmatches a customer leaves no newer loaded_at behind: the next run looks at
-- the same change again and rewrites the same rows with the same values.
{{ config(
    materialized='incremental',
    incremental_strategy='upsert',
    unique_key='customer_id',
    on_schema_change='fail',
    post_hook=["{{ etl_platform.ensure_index(['loaded_at']) }}"],
) }}

-- depends_on: {{ ref('crm_account_history') }} {{ ref('crm_contact_history') }} (read on incremental runs only)

with customers as (
    select *
    from {{ ref('customer_history') }} as history
    where
        history.is_current
        {% if is_incremental() %}and {{ customer_inputs_changed(this) }}{% endif %}
),

{# Every account of the emails of these customers: the oldest one wins. #}
accounts as (
    select
        account_id,
        account_name,
        industry,
        customer_email,
        loaded_at,
        row_number() over (partition by customer_email order by created_at nulls last, account_id nulls last) as match_rank
    from {{ ref('crm_account') }}
    where
        not is_deleted
        and customer_email is not null
        {% if is_incremental() %}and customer_email in (select customers.email from customers){% endif %}
),

contacts as (
    select
        account_id,
        contact_id,
        loaded_at,
        row_number() over (partition by account_id order by contact_id nulls last) as contact_rank
    from {{ ref('crm_contact') }}
    where
        not is_deleted
        {% if is_incremental() %}and account_id in (select accounts.account_id from accounts){% endif %}
)

select
    customers.customer_id,
    customers.email,
    customers.first_name,
    customers.last_name,
    customers.phone,
    customers.country_code,
    customers.created_at,
    accounts.account_id as crm_account_id,
    accounts.account_name as crm_account_name,
    accounts.industry as crm_industry,
    contacts.contact_id as crm_contact_id,
    customers.is_deleted,
    customers.change_type as last_change_type,
    customers.valid_from as version_valid_from,
    customers.version_id,
    customers.pull_id,
    customers.run_id,
    greatest(
        customers.loaded_at,
        coalesce(accounts.loaded_at, customers.loaded_at),
        coalesce(contacts.loaded_at, customers.loaded_at)
    ) as loaded_at
from customers
left join accounts on customers.email = accounts.customer_email and accounts.match_rank = 1
left join contacts on accounts.account_id = contacts.account_id and contacts.contact_rank = 1
