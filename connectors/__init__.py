"""Source adapters. Each one lists folders, fetches changes since a cursor and
returns normalised records plus the next cursor. None touches the database."""
