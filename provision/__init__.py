"""Provision and manage the AWS side of a SimpleTrader stack (``python -m provision``).

See docs/PROVISION.md for the commands and docs/CONFIG.md for the config file.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
