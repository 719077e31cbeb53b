from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "automations"
    verbose_name = "Automations"

    def ready(self) -> None:
        # The services queue tasks by their registered names (automations.taskqueue): every
        # process, not only a worker that autodiscovers them, registers the tasks.
        import automations.tasks  # noqa: F401
        from automations import selectors
        from automations.alerts import ALERT_TRIGGERED, alert_acknowledge_on_site
        from automations.demo import demo_automations_ensure, demo_wallet_topup_ensure
        from automations.engine.evaluation import on_event
        from energy.analytics.annotations import annotation_reader_register
        from energy.demo import demo_extension_register
        from energy.live.site_alerts import SiteAlertsProvider, site_alerts_provider_register
        from joulepoint.events.keys import event_key_register
        from joulepoint.events.services import subscribe

        event_key_register(ALERT_TRIGGERED)
        # Rules may listen to every key any app registers.
        subscribe(on_event)
        # Annotations show in energy's analytics API and dashboard; energy does not import us.
        annotation_reader_register(selectors.annotations_for_meters)
        # Open alerts on the admin's landing page and the dashboard, with its acknowledge button.
        site_alerts_provider_register(
            SiteAlertsProvider(open_alerts=selectors.site_open_alerts, acknowledge=alert_acknowledge_on_site)
        )
        # The demo's rules, alerts and webhook (make run); energy does not import us.
        demo_extension_register("automations", demo_automations_ensure)
        # After the history: by then billing's part (registered after ours) made the demo wallet.
        demo_extension_register("automations_topup", demo_wallet_topup_ensure, after_history=True)

        from automations.models import Action, Annotation, RelayCommand, Rule, RuleAction
        from joulepoint.audit.registry import audit_register

        # The audit trail (docs/audit.md): rules, actions (webhook secrets masked), relay
        # decisions, annotations; not alerts, deliveries or breakers (what rules do, not config).
        audit_register(Action, secret_fields=["config"])
        for model in (Rule, RuleAction, RelayCommand, Annotation):
            audit_register(model)
