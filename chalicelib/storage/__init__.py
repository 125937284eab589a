"""DynamoDB storage through PynamoDB: models and the repository functions over them."""
