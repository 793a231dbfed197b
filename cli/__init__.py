"""scssq command-line client: thin click commands over cli.client."""
