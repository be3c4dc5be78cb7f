"""The replicated job-queue state machine: pure, deterministic, applied entry by entry."""
