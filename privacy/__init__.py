"""Cairn's privacy core: DP events, accounting, secure mechanisms, signed ledger, policy, reports.

This package imports neither Flower nor any network code: nodes, the coordinator and auditors all
use it, and an auditor can read it alone.
"""
