"""Deterministic demo and benchmark data for the zone ETL platform.

``generate`` writes a reference commerce domain for a seed: an OLTP database (schema ``oltp``), CRM
JSON Lines files, daily web event drops in CSV, JSON Lines and XML, and the ECB FX rate history.
"""

from ._generate import GenerationSummary, generate

__all__ = ["GenerationSummary", "generate"]
