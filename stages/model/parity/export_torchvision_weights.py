#!/usr/bin/env python3
"""Exports torchvision weights as a safetensors state dict for `backbone_weights`.

Usage:
  export_torchvision_weights.py resnet18|resnet34|resnet50 OUT.safetensors   # ImageNet (downloads)
  export_torchvision_weights.py retinanet_resnet50_fpn OUT.safetensors       # COCO v1 (downloads)
  export_torchvision_weights.py retinanet_resnet50_fpn_v2 OUT.safetensors    # COCO v2 (downloads)
  export_torchvision_weights.py path/to/state_dict.pth OUT.safetensors       # any torchvision state dict

Names are kept exactly as torchvision writes them; `midog-model` loads either layout. COCO weights
have 91 classes: set `backbone_weights_skip = ["head.classification_head.cls_logits"]` for another
class count. torchvision runs the COCO v1 RetinaNet with batch-norm eps 0.0: set `bn_eps = 0.0`.
"""

import sys

import torch
import torchvision
from safetensors.torch import save_file


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    src, out = sys.argv[1], sys.argv[2]
    if src.endswith((".pth", ".pt")):
        state = torch.load(src, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
    elif src in ("resnet18", "resnet34", "resnet50"):
        state = getattr(torchvision.models, src)(weights="DEFAULT").state_dict()
    elif src in ("retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2"):
        state = getattr(torchvision.models.detection, src)(weights="DEFAULT").state_dict()
    else:
        sys.exit(f"unknown source {src!r}")
    tensors = {k: v.detach().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    save_file(tensors, out, metadata={"source": src, "torchvision": torchvision.__version__})
    print(f"wrote {len(tensors)} tensors to {out}")


if __name__ == "__main__":
    main()
