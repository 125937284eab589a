"""The notification service: everything the Lambda functions run."""
