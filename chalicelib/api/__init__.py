"""The HTTP edge of each resource: requests into domain values, domain values into answers.

One module per resource, so that each can become that resource's Chalice Blueprint with
its routes beside it; until then the routes are in ``app.py`` and call these. Nothing
below this package knows the response models.
"""
