"""Downlink: commands to devices (services), their MQTT topics (mqtt) and Celery tasks (tasks)."""
