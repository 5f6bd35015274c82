"""The lifelong loop: the driver and one module per step (index, learn, prove, bank, evaluate)."""
from agent.loop.context import StepFailed
from agent.loop.driver import run_stream

__all__ = ["StepFailed", "run_stream"]
