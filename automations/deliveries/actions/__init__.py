"""The action types, one module each; registry.py maps a type to its handler."""
