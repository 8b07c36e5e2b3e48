"""A SageMaker multi-model endpoint on one machine, and what measures and plans for one.

  cache.py           the model cache: LRU under a memory budget, one load per model at a time
  source.py          the artifacts of a publish destination (S3, moto, file:), with a disk copy
  triton_backend.py  one Triton with its SageMaker frontend: unpack, load, unload, invoke
  runtime_api.py     the SageMaker Runtime API (InvokeEndpoint, /ping, admin metrics), werkzeug
  metrics.py         CloudWatch-named metrics as JSON and Prometheus text, latency per model
  endpoint.py        the local endpoint: the pieces together, robustness, start and stop
  traffic.py         traffic mixes: uniform, Zipf, per-model rates from a CSV
  fleet.py           fleet load tests through boto3 invoke_endpoint (locust)
  capacity.py        the capacity plan: instances, memory, InvocationsPerInstance, caching

See docs/endpoint.md.
"""
