"""The registry of explanation methods: name -> explainer (adding a method is one file + one line)."""

from services.explain.base import Explainer
from services.explain.cam import CAM
from services.explain.gradcam import GradCAM
from services.explain.lime import Lime
from services.explain.shap import KernelShap

METHODS: dict[str, Explainer] = {e.name: e for e in (CAM(), GradCAM(), Lime(), KernelShap())}
