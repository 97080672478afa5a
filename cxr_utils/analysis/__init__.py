"""Analysis: metrics with group-bootstrap intervals, and held-out scoring of chosen models."""
