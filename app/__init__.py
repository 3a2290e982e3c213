"""smartbench: probes LLM inference endpoints and keeps their SMART scorecards."""

__version__ = "0.1.0"
