"""Load management admin pages, one module per half of the area."""
