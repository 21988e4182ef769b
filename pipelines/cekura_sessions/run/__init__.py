"""One night: the lock, the dlt pipeline and its leftovers, what earlier nights stored, the
status history, the run ledger and the exit code."""
