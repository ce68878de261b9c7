"""Training side of medkiosk (workstation only, needs the ``[train]`` extra): data, models, checkpoints.

Importing this package does nothing; torch is imported by the submodules that need it.
"""
