from django.apps import AppConfig

# MLOps' keys are declared before its services exist: rules and live dashboards already listen
# for anomalies (docs/automations.md, docs/live.md).
ML_INFERENCE = "ml.inference"
ANOMALY_DETECTED = "anomaly.detected"


class MlopsConfig(AppConfig):
    name = "mlops"
    verbose_name = "MLOps"

    def ready(self) -> None:
        from joulepoint.events.keys import event_key_register

        event_key_register(ML_INFERENCE)
        event_key_register(ANOMALY_DETECTED)
