"""Experiment trackers: each recorded run mirrored to MLflow or Weights & Biases.

The metadata store stays the record stackmagic reads; a stack's experiment
tracker gets a copy of every run as it is recorded (``mirror.py``), by whichever
process records it: this machine, a Kubeflow pod, a VM or a step operator's job.
Each flavor's client is a module here with a ``TRACKER`` class (see ``base.py``).
"""
