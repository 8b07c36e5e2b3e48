"""Endpoints as code: the staging and production SageMaker multi-model endpoints declared in
mmetools.toml, planned and applied through boto3, smoke-tested and kept warm (docs/endpoints.md)."""
