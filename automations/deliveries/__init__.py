"""Deliveries: one per (sub-event, rule, action), attempted by workers until done or dead."""
