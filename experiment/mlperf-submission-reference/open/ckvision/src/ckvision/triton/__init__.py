"""Triton Inference Server: model repositories, a managed server, a client backend, perf_analyzer.

``repository`` writes ``config.pbtxt`` model repositories (python, onnxruntime, tensorrt);
``server`` finds a ``tritonserver`` and runs it for the duration of a ``with`` block;
``client`` is the ``triton`` backend of the registry; ``perf`` runs and parses
``perf_analyzer``; ``stats`` diffs Triton's inference statistics into a latency breakdown.
"""
