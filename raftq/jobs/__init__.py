"""The replicated job-queue state machine: pure, deterministic, applied entry by entry."""

from raftq.jobs.commands import Command, JobSpec
from raftq.jobs.job import JobState, JobView
from raftq.jobs.machine import JobStateMachine

__all__ = ["Command", "JobSpec", "JobState", "JobStateMachine", "JobView"]
