"""Values every layer shares, and nothing else: periods and durations, totals and
views, the errors and failure reasons, the account as configured, the ledger (caps and
revisions) and logging. Imports no other layer of the package."""
