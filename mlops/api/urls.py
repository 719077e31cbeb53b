"""MLOps routes (seed: /api/ml/datasets, /training-jobs, /assignments, /promotions; and the
registry at /models). Every path answers with and without a trailing slash."""

from __future__ import annotations

from joulepoint.platform.api import OptionalSlashRouter
from mlops.api import trainer, views

router = OptionalSlashRouter()
router.register("datasets", views.DatasetViewSet, basename="ml-dataset")
router.register("training-jobs", views.TrainingJobViewSet, basename="ml-training-job")
# The external trainer's doors under the same prefix, authenticated by job tokens (api/trainer.py).
router.register("training-jobs", trainer.TrainerViewSet, basename="ml-training-job-trainer")
router.register("models", views.RegisteredModelViewSet, basename="ml-model")
router.register("assignments", views.AssignmentViewSet, basename="ml-assignment")
router.register("promotions", views.PromotionViewSet, basename="ml-promotion")

urlpatterns = router.urls
