"""Use cases that join the database to the probe and scoring. Each takes the session first and
keyword data after, and flushes; the request or the job that called it commits."""
