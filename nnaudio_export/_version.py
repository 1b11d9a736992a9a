"""The package version (read by the bundle writer for manifests, and by the CLI)."""
__version__ = "0.1.0"
