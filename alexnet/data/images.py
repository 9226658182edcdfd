"""Decoding image files to uint8 RGB arrays, and resizing a dataset's images."""

import contextlib
import dataclasses
import warnings

import numpy as np


def _to_rgb(image):
    """Converts any PIL mode to RGB; transparent pixels are composited on white."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16/32-bit integer or float samples
        image = _scaled_to_8_bits(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def _scaled_to_8_bits(image):
    """A high-bit-depth grayscale image scaled to 8 bits ("L"), not clipped at 255.

    16-bit modes are scaled by 255/65535; 32-bit integers by their type's range
    when values exceed 16 bits; floats are taken as 0..1 (the TIFF convention)
    unless they exceed 1, then as 0..255.
    """
    from PIL import Image

    values = np.asarray(image)
    if image.mode == "F":
        values = values.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError("float image holds NaN or infinite values")
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
    elif image.mode == "I" and values.max(initial=0) > 65535:
        scale = 255.0 / (2 ** 31 - 1)
    else:  # I;16 variants, or 32-bit integers holding 16-bit data (PIL reads 16-bit PNGs as "I")
        scale = 255.0 / 65535
    if values.min(initial=0) < 0:
        raise ValueError(f"{image.mode} image holds negative values")
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), mode="L")


@contextlib.contextmanager
def open_rgb(path, draft_for=None):
    """An image file opened as an RGB PIL image (see `_to_rgb`).

    draft_for=(width, height): a JPEG is decoded at the smallest of its 1/1, 1/2,
    1/4, 1/8 scales that still covers that size (PIL's draft mode), which saves
    most of the decoding of a photo that is resized down anyway.
    """
    from PIL import Image

    with warnings.catch_warnings():  # a very large image: PIL warns (two lines); above twice its limit it raises
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(path)
    with image:
        if draft_for is not None and image.format == "JPEG" and image.mode in ("RGB", "L"):
            image.draft(image.mode, draft_for)
        yield _to_rgb(image)


def decode_image(path, size=None):
    """Decodes one image file to uint8 RGB (H, W, 3), resized (bilinear) to size=(height, width) if given."""
    from PIL import Image

    with open_rgb(path) as image:
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def pixel_limit():
    """The most pixels an image may have to be decoded: PIL's own refusal (twice Image.MAX_IMAGE_PIXELS, about
    179 million), on every path, so that one oversized scan costs a warning, not the memory of the run."""
    from PIL import Image

    return 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None


def too_large(path):
    """Whether an image file's header says it has more pixels than `pixel_limit` (a decompression bomb); an
    unreadable header is not too large (decoding it fails on its own)."""
    from PIL import Image

    limit = pixel_limit()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return limit is not None and image.size[0] * image.size[1] > limit
    except Image.DecompressionBombError:
        return True
    except Exception:  # PIL and the OS raise many types; not ours to report here
        return False


def _image_size(path):
    """(height, width) of an image file, read from its header; None if it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]  # (height, width)
    except Exception:  # unreadable files are reported when decoded
        return None


def _resized(dataset, size):
    """Returns the dataset with every image resized (bilinear) to size=(height, width)."""
    from PIL import Image

    def resize(images):
        return np.stack([np.asarray(Image.fromarray(im).resize((size[1], size[0]), Image.BILINEAR)) for im in images])

    return dataclasses.replace(dataset, x_train=resize(dataset.x_train), x_test=resize(dataset.x_test))

