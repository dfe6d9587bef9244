-- The books of this run's pulls (library.books, full pulls): typed and checked.
{{ etl_platform.validated_config('book') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }}

with
{{ etl_platform.pull_records('library', 'books', 'book_history', snapshot=true) }},

typed as (
    select
        {{ etl_platform.try_cast(etl_platform.field('shelf'), 'char(3)') }} as shelf,
        {{ etl_platform.try_cast(etl_platform.field('book_no'), 'integer') }} as book_no,
        {{ etl_platform.field('title') }} as title,
        {{ etl_platform.try_cast(etl_platform.field('published'), 'date') }} as published,
        {{ etl_platform.try_cast(etl_platform.field('price'), 'numeric(15, 2)') }} as price,
        {{ etl_platform.record_origin() }},
        pull_records.column_names,
        pull_records.record
    from pull_records
),

checked as (
    select
        typed.*,
        {{ etl_platform.dq_failures([
            ('book.key_valid', 'shelf is not null and book_no is not null'),
            ('book.published_valid', 'published is not null'),
        ]) }} as dq_failed
    from typed
)

select
    shelf,
    book_no,
    title,
    published,
    price,
    false as is_deleted,
    {{ etl_platform.dq_columns('checked') }}
from checked
