"""Gradio wiring for the explorer. Computation lives in `vitviz.views`; each tab here
only connects components to those functions."""
