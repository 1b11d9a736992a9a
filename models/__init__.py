"""Preset frontend specs (one JSON file each). This directory is installed as the package
``nnaudio_export.models`` (see pyproject.toml), where ``nnaudio_export.presets`` reads it."""
