"""The classifier dashboard's numbers: eigenvalues and eigen-images are `eigen_images`', each test image's value is
its component's `lambda (v . e')^2` by `explain_input`, the masks are `adversarial_mask`."""

from __future__ import annotations

import torch

from hooked_bilinear import vision
from hooked_bilinear.vision.eigenimages import orient


def test_classifier_data_is_the_package_numbers(digits_page: tuple) -> None:
    model, _, data = digits_page
    split = vision.load_split(model.config)
    found = vision.eigen_images(model)
    assert data["test_images"] == len(split.test_y) and data["image_shape"] == [8, 8]
    norm = data["mask_norm"]
    for c, cls in enumerate(data["classes"]):
        assert torch.allclose(
            torch.tensor(cls["spectrum"], dtype=torch.float64),
            found.lambda_[c].sort(descending=True).values,
            rtol=1e-4,
            atol=1e-8,
        )
        images = orient(found.images[c], split.test_x.mean(0).double())
        for component in cls["eigen"]:
            index = component["index"]
            assert abs(component["lambda"] - found.lambda_[c, index].item()) <= 1e-5 * abs(component["lambda"])
            assert torch.allclose(
                torch.tensor(component["image"], dtype=torch.float64),
                images[index],
                rtol=1e-3,
                atol=1e-4 * images[index].abs().max(),
            )
            for image, value in component["top_images"]:
                explained = vision.explain_input(model, split.test_x[image])
                assert abs(explained.contributions[c, index].item() - value) <= 1e-3 * abs(value) + 1e-6
                assert data["images"][str(image)][-1] == int(split.test_y[image])
        for method in ("eigen", "pinv"):
            mask = vision.adversarial_mask(model, c, norm=norm, method=method).double()
            assert torch.allclose(
                torch.tensor(cls["masks"][method]["image"], dtype=torch.float64), mask, rtol=1e-3, atol=1e-3
            )
    with torch.no_grad():
        accuracy = (model(split.test_x).argmax(-1) == split.test_y).double().mean().item()
    assert abs(data["test_accuracy"] - accuracy) <= 1e-4
