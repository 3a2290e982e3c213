"""The judge: pure functions from stored step summaries and cost inputs to costs, operating
points and SMART letters. No I/O, no database, no web."""
