"""Guard: secrets, validation, injection defense, redaction, budgets."""
