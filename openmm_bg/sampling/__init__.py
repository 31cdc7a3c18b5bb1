"""Importance-weighted samples from a generator: one container, drawn, saved and loaded."""

from .samples import SAMPLE_FILES, SampleSet, draw_samples, load_checkpoint, load_samples, report_lines, save_samples, weigh_configurations

__all__ = ["SampleSet", "SAMPLE_FILES", "load_checkpoint", "draw_samples", "save_samples", "load_samples", "report_lines", "weigh_configurations"]
