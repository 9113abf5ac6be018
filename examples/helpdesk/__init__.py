"""The helpdesk example: support tickets -> triage -> resolver, on the simulated world."""
