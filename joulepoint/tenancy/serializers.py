from __future__ import annotations

from django.db import models
from rest_framework import serializers


class TenantModelSerializer(serializers.ModelSerializer):
    """Checks the model's per-organization unique constraints, so a clash is a 400, not a 500."""

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        organization = self.context.get("organization")
        model = self.Meta.model
        for constraint in model._meta.constraints:
            if not isinstance(constraint, models.UniqueConstraint) or "organization" not in constraint.fields:
                continue
            fields = [f for f in constraint.fields if f != "organization"]
            lookup = {"organization": organization}
            for name in fields:
                if name in attrs:
                    lookup[name] = attrs[name]
                elif self.instance is not None:
                    lookup[name] = getattr(self.instance, name)
                else:
                    break
            else:
                clash = model.objects.filter(**lookup)
                if self.instance is not None:
                    clash = clash.exclude(pk=self.instance.pk)
                if clash.exists():
                    raise serializers.ValidationError(
                        {fields[-1]: [f"A {model._meta.verbose_name} with this {fields[-1]} already exists."]}
                    )
        return attrs
