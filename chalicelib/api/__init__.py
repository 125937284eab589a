"""The HTTP API: one Chalice Blueprint per resource, each with its routes, their OpenAPI
description (:mod:`chalicelib.api.operation`) and the mapping between request and
response models and domain values. Nothing below this package knows the response models.

This file imports nothing: the authorizer's Lambda handler lives in
:mod:`chalicelib.api.auth` and should not load the other blueprints.
"""
