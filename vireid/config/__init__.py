"""Configuration: one commented defaults file (defaults.py), YAML inheritance, command-line overrides."""
