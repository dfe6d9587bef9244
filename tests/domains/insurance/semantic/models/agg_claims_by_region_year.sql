-- Claims per branch region and year, for the claims report.
{{ config(unique_key=['region_year_region', 'region_year_year']) }}
select
    branches.branch_region as region_year_region,
    dates.claim_date_year as region_year_year,
    count(*) as region_year_claims,
    sum(claims.claim_amount) as region_year_amount
from {{ ref('fct_claim') }} as claims
inner join {{ ref('dim_branch') }} as branches on claims.branch_key = branches.branch_key
inner join {{ ref('dim_claim_date') }} as dates on claims.claim_date_key = dates.claim_date_key
group by branches.branch_region, dates.claim_date_year
