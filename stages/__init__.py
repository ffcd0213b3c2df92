"""Science stages of the DSA-110 pipeline: one package per stage.

Stages import the framework (:mod:`dsa110_pipeline`); the framework finds them by
dotted name through ``pipeline.stages`` in the config.
"""
