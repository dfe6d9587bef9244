{#- Fails (severity error) when a record-level rule of `entity` with severity 'error' had more
    failing records in this job than its threshold allows; the job then exits with code 4. -#}
{% test record_rules_within_threshold(model, entity) %}
select
    results.rule_id,
    results.failures,
    results.checked,
    results.threshold
from {{ source('ops', 'dq_results') }} as results
where
    results.job_id = {{ job_id_value() }}
    and results.zone = 'conformed'
    and results.status = 'fail'
    and results.rule_id in (select rules.rule_id from {{ ref('dq_rules') }} as rules where rules.entity = '{{ entity }}')
    -- keep a reference to the model so the test runs after it: {{ model }}
{% endtest %}
