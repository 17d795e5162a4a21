"""Orchestrators: what runs a pipeline's steps, and where (one interface, one module per flavor)."""
