-- The conformed customer: the current OLTP customer, joined to its CRM account (matched on the
-- trimmed lower-case email the CRM keeps for the customer) and that account's primary contact.
-- Deleted customers are kept with is_deleted = true. Rebuilt every run (customers are few; a CRM
-- change must reach the customer without a customer change).
{{ config(materialized='table') }}

with customers as (
    select *
    from {{ ref('customer_history') }}
    where is_current
),

accounts as (
    select
        account_id,
        account_name,
        industry,
        customer_email,
        row_number() over (partition by customer_email order by created_at, account_id) as match_rank
    from {{ ref('crm_account') }}
    where not is_deleted and customer_email is not null
),

contacts as (
    select
        account_id,
        contact_id,
        row_number() over (partition by account_id order by contact_id) as contact_rank
    from {{ ref('crm_contact') }}
    where not is_deleted
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
    customers.loaded_at
from customers
left join accounts on customers.email = accounts.customer_email and accounts.match_rank = 1
left join contacts on accounts.account_id = contacts.account_id and contacts.contact_rank = 1
