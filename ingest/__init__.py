"""Getting media into the warehouse: sources, decoding, encoders, analyzers, the pipeline."""
