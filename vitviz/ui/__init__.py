"""Gradio wiring for the explorer. Computation lives in the modules of `vitviz`; each tab here
only connects components to those functions."""
