"""Explainable CNN: feature maps through forward hooks, and Grad-CAM, on a photo.

``FeatureMaps`` registers ``register_forward_hook`` on the chosen stages and removes the hooks on exit;
Grad-CAM weighs the last stage's maps by their gradients for the predicted class.

Run:  python examples/cnn_explain.py                 (scikit-image's cat photo "chelsea")
      python examples/cnn_explain.py --image my.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import cnn


def main(argv: list[str] | None = None) -> list[tuple[str, float]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=None, help="an image file (default: scikit-image's chelsea)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--out", default="runs/explain")
    p.add_argument("--quick", action="store_true", help="same run (it is already quick)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.image:
        image = cnn.read_image(args.image)
    else:
        from skimage import data

        image = data.chelsea()
    model = cnn.create_backbone(args.backbone, weights="imagenet")
    x = cnn.build_transforms(model, train=False)(image).unsqueeze(0)  # (1, 3, S, S)

    with cnn.FeatureMaps(model, [0, len(model.feature_channels) - 1]) as fm, torch.no_grad():
        probs = model(x).softmax(1)[0]
    for name, fmap in fm.maps.items():
        print(f"feature maps of {name}: {tuple(fmap.shape)}")
    first = next(iter(fm.maps.values()))
    cnn.plot_feature_maps(first[0], path=out / "feature_maps.png")

    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    top = [(info.index_to_description(int(i)), float(v)) for v, i in zip(*probs.topk(5))]
    for name, prob in top:
        print(f"{prob:.3f}  {name}")
    cam = cnn.grad_cam(model, x)[0].numpy()
    shown = (cnn.to_display(x[0], model.cfg) * 255).astype(np.uint8)
    cnn.plot_grad_cam(shown, cam, path=out / "grad_cam.png")
    print(f"wrote {out / 'feature_maps.png'}, {out / 'grad_cam.png'}")
    return top


if __name__ == "__main__":
    main()
