from django.apps import AppConfig


class MlopsConfig(AppConfig):
    name = "mlops"
    verbose_name = "MLOps"

    def ready(self) -> None:
        # Services queue tasks by name: every process registers them, not only a worker.
        import mlops.tasks  # noqa: F401
        from energy.analytics.forecast import forecast_provider_register
        from energy.demo import demo_extension_register
        from joulepoint.events.keys import event_key_register
        from joulepoint.events.services import subscribe
        from mlops.api import schema  # noqa: F401  (registers the OpenAPI trainer-token scheme)
        from mlops.demo import demo_extend
        from mlops.events import ANOMALY_DETECTED, ML_INFERENCE
        from mlops.forecasting import model_forecast
        from mlops.inference.scoring import on_event

        event_key_register(ML_INFERENCE)
        event_key_register(ANOMALY_DETECTED)
        # Ingested batches go to an `inference` worker when the organization serves an anomaly model.
        subscribe(on_event, keys=["data.ingested"])
        # GET /api/energy/analytics/forecast?method=model serves the subject's production model.
        forecast_provider_register("model", model_forecast)
        # make run's demo: an anomaly model on the depot's grid meter, in production.
        # After the month of history: the demo model trains on it.
        demo_extension_register("mlops", demo_extend, after_history=True)

        from joulepoint.audit.registry import audit_register
        from mlops.models import Assignment, Dataset, ModelAlias, ModelVersion, Promotion, RegisteredModel, TrainingJob

        # The audit trail (docs/audit.md): what serves whom and who promoted it; not dataset
        # builds or inference runs (machine work), and no job logs.
        audit_register(
            TrainingJob,
            secret_fields=["download_token_hash", "completion_token_hash"],
            exclude_fields=["logs", "progress_percent", "progress_message", "progress_at"],
        )
        for model in (Dataset, RegisteredModel, ModelVersion, Assignment, ModelAlias, Promotion):
            audit_register(model)
