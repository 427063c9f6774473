"""Reporting: per-domain table, run summary and the ``domain_mix`` SQL view."""

from samplemix_spark.report.domains import DOMAIN_MIX_SQL, ReportStep, format_report, register_domain_mix_view

__all__ = ["DOMAIN_MIX_SQL", "ReportStep", "format_report", "register_domain_mix_view"]
