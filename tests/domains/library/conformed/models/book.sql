-- Current state of each book.
{{ etl_platform.current_config(['shelf', 'book_no']) }}

{{ etl_platform.current_from_history(ref('book_history'), ['shelf', 'book_no'], ['title', 'published', 'price']) }}
