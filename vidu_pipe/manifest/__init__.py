"""The manifest: what happened to each shot, on disk, crash-safe.

``model`` (entries as values, the JSON format checked against
``schemas/manifest.schema.json``) → ``journal`` (one fsynced line per state change,
replayed on load) → ``lock`` (one run per manifest) → ``store`` (the one mutable
object of a run: it makes a task id durable before anything else happens).
"""
