"""The instrument: streams requests, timestamps every token, computes run statistics.

asyncio + aiohttp on the hot path; imports nothing from the database or the web layer."""
