import numpy as np
from PIL import Image

from alexnet.data import images


def test_high_bit_depth_images_are_scaled_not_clipped(tmp_path):
    gradient16 = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(gradient16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    gradient_float = np.linspace(0, 1, 64).reshape(8, 8).astype(np.float32)
    Image.fromarray(gradient_float).save(tmp_path / "f32.tif")
    for name in ("g16.png", "f32.tif"):
        decoded = images.decode_image(tmp_path / name)[..., 0]
        assert decoded[0, 0] == 0 and decoded[-1, -1] == 255, name
        np.testing.assert_allclose(decoded.reshape(-1), np.linspace(0, 255, 64), atol=1, err_msg=name)
