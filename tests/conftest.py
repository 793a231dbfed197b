"""Test session setup: a private redis-server, moto's S3 server, real fleets."""

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.s3",
    "tests.support.fleet",
    "tests.support.sentinel",
]
