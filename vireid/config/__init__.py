"""Configuration: one commented defaults file (defaults.py), YAML inheritance, command-line overrides."""

from vireid.config.defaults import VireidConfig
from vireid.config.loader import config_from_yaml, config_keys, config_to_yaml, load_config, save_config

__all__ = ["VireidConfig", "config_from_yaml", "config_keys", "config_to_yaml", "load_config", "save_config"]
