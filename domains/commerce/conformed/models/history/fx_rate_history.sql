-- Change history (SCD type 2) of published ECB rates (fx.ecb_rates, full pulls: a correction is an update).
{{ etl_platform.history_config(['rate_date', 'currency_code'], 'fx', 'ecb_rates', snapshot=true) }}

{{ etl_platform.scd2_history(
    ref('validated_fx_rate'),
    ['rate_date', 'currency_code'],
    ['units_per_eur'],
    change_time='pull_committed_at', snapshot=true,
) }}
