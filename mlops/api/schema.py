"""OpenAPI description of the external trainer's job tokens (loaded by MlopsConfig.ready)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TrainerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "mlops.api.trainer.TrainerTokenAuthentication"
    name = "trainerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A training job's single-purpose token from its signed job spec: the download "
            "token reads the dataset, the completion token completes the job once.",
        }
