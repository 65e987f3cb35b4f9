"""Analysis of finished runs: comparison tables, reports, the run history, regression checks."""
