"""Resilience: deadlines, retries, circuit breakers, rate limits, classification."""
