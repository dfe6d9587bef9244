-- Change history of the books (a book missing from a full pull is deleted).
{{ etl_platform.history_config(['shelf', 'book_no'], 'library', 'books', snapshot=true) }}

{{ etl_platform.scd2_history(
    ref('validated_book'), ['shelf', 'book_no'], ['title', 'published', 'price'], snapshot=true
) }}
