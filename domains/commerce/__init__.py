"""The demo's commerce domain (a folder of YAML, SQL and CSV; this file makes it installable)."""
