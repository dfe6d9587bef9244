-- Claims at claim grain (deleted claims left out): the fact of the Qlik app insurance_claims.
{{ config(unique_key='claim_key', meta={'etl_qlik_app': 'insurance_claims'}) }}

select
    {{ etl_platform.surrogate_key(['claims.branch_code', 'claims.policy_no', 'claims.claim_no']) }} as claim_key,
    coalesce(branches.branch_key, {{ etl_platform.unknown_key() }}) as branch_key,
    coalesce(policies.policy_key, {{ etl_platform.unknown_key() }}) as policy_key,
    coalesce(dates.claim_date_key, {{ etl_platform.unknown_key() }}) as claim_date_key,
    claims.claim_no,
    claims.amount as claim_amount
from {{ source('conformed', 'ins_claim') }} as claims
left join {{ ref('dim_branch') }} as branches on claims.branch_code = branches.branch_code
left join {{ ref('dim_policy') }} as policies
    on claims.branch_code = policies.policy_branch_code and claims.policy_no = policies.policy_no
left join {{ ref('dim_claim_date') }} as dates on claims.claim_date = dates.claim_date_value
where not claims.is_deleted
