"""The benchmark scripts' bookkeeping (their timings are not tests)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import run  # noqa: E402  bench/run.py


OLD = """# Benchmarks

old intro

## Input pipeline

old figures

## GPU

Measured on 1x NVIDIA H100: 21,000 images/s

## Time to accuracy

84% in 30 minutes
"""
NEW = """# Benchmarks

new intro

## Input pipeline

new figures

## GPU

Not measured yet: no GPU machine was lent.
"""


def test_the_suite_keeps_sections_it_does_not_write_and_measured_gpu_figures():
    merged = run.merge(OLD, NEW)
    assert "new intro" in merged and "new figures" in merged and "old figures" not in merged
    assert "21,000 images/s" in merged and "Not measured yet" not in merged
    assert "## Time to accuracy\n\n84% in 30 minutes" in merged


def test_a_placeholder_gpu_section_is_replaced():
    assert "Not measured yet" in run.merge(NEW.replace("new", "old"), NEW)
