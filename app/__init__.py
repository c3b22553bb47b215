"""Threadline: reps' mailboxes become one shared, company-wide contact timeline."""
