"""Running models on a real Triton: the source test, the artifact test through the SageMaker
frontend, the server itself and its Python-based backends. Imports core, model, build."""
