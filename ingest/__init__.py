"""Getting media into the warehouse: sources, decoding, video keyframes, analyzers, the pipeline.

The encoders the pipeline embeds with live in the top-level package `encoders/`
(concepts use them too).
"""
