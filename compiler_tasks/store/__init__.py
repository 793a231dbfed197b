"""The artifact store: a folder or an S3 bucket, and presigned reads without boto3."""
