"""Business operations shared by the API, the CLI and the admin pages."""
