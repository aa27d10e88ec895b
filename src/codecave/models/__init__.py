"""Enhancement models. Use :func:`create_model` and :func:`list_models`."""

from codecave.models.registry import create_model, list_models, model_info

__all__ = ["create_model", "list_models", "model_info"]
