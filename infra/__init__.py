"""The AWS deployment: the CloudFormation template merged into ``chalice package``.

Never deployed to Lambda (only ``app.py``, ``chalicelib/`` and ``vendor/`` are).
"""
