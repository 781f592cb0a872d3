"""``scenario-exporter check``: one upstream call per account and a summary for humans."""
