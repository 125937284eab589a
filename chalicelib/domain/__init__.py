"""Pure rules of the product: no boto3, no HTTP, no clock reads."""
