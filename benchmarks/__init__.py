"""Benchmark suite of sparkml_lloyd: ``python -m benchmarks.run --help`` from the checkout root.

Modules: :mod:`benchmarks.grid` (cells and settings), :mod:`benchmarks.datagen` (dense data on
the executors), :mod:`benchmarks.textgen` (sparse text-like data on the executors),
:mod:`benchmarks.competitors` (the implementations under test), :mod:`benchmarks.measure`
(timing, processes, memory), :mod:`benchmarks.storage` (what a competitor caches),
:mod:`benchmarks.record` (environment and JSON), :mod:`benchmarks.report` (page, plot,
targets), :mod:`benchmarks.report_sparse` (the page's sparse section and targets),
:mod:`benchmarks.run` (the runner).
"""
