"""An OpenAI-compatible simulated inference server with a continuous-batching latency model.

Used by `smartbench demo`, by the tests (as ground truth: its delays are known), and by anyone
without a GPU. Imports nothing from the database or the web layer."""

from app.simulator.presets import PRESETS, SimConfig, preset
from app.simulator.server import Simulator

__all__ = ["PRESETS", "SimConfig", "Simulator", "preset"]
