"""Grad-CAM (Selvaraju et al. 2017): weight the feature maps A of a conv layer by the spatial mean
of the gradient of the target logit, sum over channels, ReLU, upsample to the input size:
    α_c = mean_ij ∂y_k/∂A_cij,   map = ReLU(Σ_c α_c · A_c).
Any conv layer of the model (``options.layer``; default the last); no GAP needed. The computation
is captum's ``LayerGradCam``; tests compare it with a from-scratch hook implementation."""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam

from services.explain.base import Explainer, ExplainError, Explanation, Options, to_images
from services.explain.models import Bundle


def conv_layers(bundle: Bundle) -> dict[str, torch.nn.Module]:
    return bundle.net.conv_layers()


class GradCAM(Explainer):
    name = "gradcam"
    kinds = ("image",)

    def applies_to(self, bundle: Bundle) -> bool:
        return bundle.kind == "image" and hasattr(bundle.net, "conv_layers")

    def attribute(self, bundle: Bundle, x: np.ndarray, targets: np.ndarray, options: Options) -> Explanation:
        layers = conv_layers(bundle)
        name = options.layer or list(layers)[-1]
        if name not in layers:
            raise ExplainError(f"unknown layer {name!r} (choose from {', '.join(layers)})")
        inputs = to_images(x, bundle.device)
        gradcam = LayerGradCam(bundle.net, layers[name])
        maps = gradcam.attribute(inputs, target=torch.as_tensor(targets, device=bundle.device),
                                 relu_attributions=True)  # (B, 1, h, w)
        up = LayerAttribution.interpolate(maps, (28, 28), interpolate_mode="bilinear")  # (B, 1, 28, 28)
        return Explanation(up[:, 0].detach().cpu().numpy(), evaluations=len(x))
