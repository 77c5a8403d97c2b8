"""Benchmarks of what the project exists for, each figure printed beside its baseline.

``python -m bench`` (or ``make bench``) runs:

- ``sync``: start-to-ready on a test host: our ``simpletrader-workspace sync``
  cold and warm against the original's routine (wipe, download, ``pip install``
  into the system interpreter), same bucket, same wheelhouse, same host;
- ``provision``: API calls per service/operation and per resource, and wall
  time, for ``up`` from empty, a no-change ``up`` and ``plan`` against the
  emulator;
- ``ansible``: ``site.yml`` (from the repository root) first and no-change
  runs on fresh test hosts with the project's ``ansible.cfg`` and with
  Ansible's defaults;
- ``cost``: the monthly bill ``stack.yml`` implies (``provision/cost.py``)
  against the same instance running 24/7.

Results: BENCHMARKS.md. Numbers also go to a JSON file (``--json``).
"""
