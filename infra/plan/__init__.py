"""Capacity and cost planner: replay traffic through the stack's own scaling configuration.

``python -m infra.plan --profile diurnal-week --out plan/`` (docs/planner.md).
"""
