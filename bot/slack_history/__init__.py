"""Slack channel history as a source of documents (``lorebot ingest-slack``).

This lives in ``bot/``, not ``knowledge/``: DESIGN.md keeps ``knowledge/`` free of Slack. Here
Slack is read through slack_sdk (``reader``), its messages become plain ``knowledge`` Documents
scoped to their channel (``documents``), each channel's progress is kept in lorebot's database
(``sync_state``), and ``ingest`` ties them together for the command line.
"""
