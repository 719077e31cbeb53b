"""The rule engine: which rules an event fires, and what each firing records."""
