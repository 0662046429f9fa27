"""ck-mlperf-vision: MLPerf-style image-classification benchmarking through CK."""

__version__ = "0.1.0"
