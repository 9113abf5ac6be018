"""The process runtime: agent processes, supervisors, messages with deadlines."""
