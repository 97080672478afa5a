"""Reporting: collect runs into tables, figures, the study's Table 1, the HTML export."""
