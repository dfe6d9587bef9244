-- Branches (current state; deleted ones kept, flagged), plus the unknown member.
{{ config(unique_key='branch_key') }}
select
    {{ etl_platform.surrogate_key(['branch_code']) }} as branch_key,
    branch_code,
    branch_name,
    region as branch_region,
    is_deleted as branch_is_deleted
from {{ source('conformed', 'ins_branch') }}
union all
select
    {{ etl_platform.unknown_key() }} as branch_key,
    '????'::char(4) as branch_code,
    'Unknown branch' as branch_name,
    '??'::char(2) as branch_region,
    false as branch_is_deleted
