"""Deterministic demo and benchmark data for the zone ETL platform.

``generate`` writes a reference commerce domain for a seed: an OLTP database (schema ``oltp``), CRM
JSON Lines files, daily web event drops in CSV, JSON Lines and XML, and the ECB FX rate history.
``SampleApiServer`` serves the CRM and FX files as REST APIs, with ``Faults`` to inject failures.
"""

from ._api import Faults, SampleApiServer
from ._generate import GenerationSummary, generate

__all__ = ["Faults", "GenerationSummary", "SampleApiServer", "generate"]
