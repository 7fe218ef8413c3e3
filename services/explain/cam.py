"""CAM (Zhou et al. 2016): with global average pooling and one linear layer,
logit_k = Σ_c w_kc · mean(A_c) + b_k, so the class activation map of class k is Σ_c w_kc · A_c
(the last feature maps A, weighted by the classifier's row for k), upsampled to the input size."""

from __future__ import annotations

import numpy as np
import torch

from services.explain.base import Explainer, Explanation, Options, capture, to_images, upsample
from services.explain.models import Bundle, GapCNN


class CAM(Explainer):
    name = "cam"
    kinds = ("image",)

    def applies_to(self, bundle: Bundle) -> bool:
        return isinstance(bundle.net, GapCNN)

    @torch.no_grad()
    def attribute(self, bundle: Bundle, x: np.ndarray, targets: np.ndarray, options: Options) -> Explanation:
        net = bundle.net
        with capture(net.features) as last:
            net(to_images(x, bundle.device))
        weights = net.fc.weight[torch.as_tensor(targets, device=bundle.device)]  # (B, C)
        maps = torch.einsum("bc,bchw->bhw", weights, last.output)  # (B, 7, 7)
        return Explanation(upsample(maps), evaluations=len(x))
