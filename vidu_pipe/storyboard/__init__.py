"""The storyboard language: a YAML file in, frozen shots with their exact request bodies out.

``loader`` (YAML with positions, safe and bounded) → ``schemas`` (the JSON Schemas of
the storyboard and of the request) → ``build`` (defaults merged, takes expanded, every
string rendered, the request body built and checked) with ``render`` (the Jinja
sandbox) → ``model`` (``Storyboard``, ``Shot``, the fingerprint).
"""
