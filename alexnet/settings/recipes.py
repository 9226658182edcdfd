"""Training recipes: how a model is compiled and fed, by name. Each recipe is data (a `Recipe`).

- `tutorial` (the default): the tutorial's settings. Plain SGD at 0.001,
  sparse categorical cross-entropy, batch 32, 50 epochs, 227x227, no augmentation.
- `fast`: the same architecture trained the way fast CIFAR-10 trainers do it,
  for a GPU at 227x227: on-device augmentation (random translation by up to
  1/8 of the stored side, the padded random crop of the ResNet papers, and
  horizontal flips), SGD with Nesterov momentum 0.9 and decoupled weight decay
  5e-4 (not on biases or normalization), a linear warm-up then cosine decay,
  label smoothing 0.1, batch 512 with the learning rate scaled linearly,
  and test-time augmentation (an image and its mirror) in the final report.
- `finetune`: for a model that starts from trained weights (`--init-from`):
  the model's own input size and normalization, `fast`'s optimizer and
  augmentation at 0.4 of its learning rate, no warm-up, batch 64, 10 epochs.
- `cpu`: `fast` tuned for a small CPU (BENCHMARKS.md, "Time to accuracy"):
  67x67 images (the smallest AlexNet takes: about 3.5x the images/s of 131),
  batch 256 and a half-epoch warm-up, so that a run of a few epochs spends its
  time learning.
  Give it the epochs your time allows; the schedule fits itself to them.

A flag the user gives always wins over the recipe's value.
"""

import dataclasses
from typing import Optional

from alexnet.errors import check_choice

# Recipes are data: the CLI reads them (their defaults, their names) before the backend is chosen. What builds
# Keras objects from a recipe (its optimizer, schedule, loss, metrics and augmentation layer) is
# alexnet.model.compiling.


@dataclasses.dataclass(frozen=True)
class Crop:
    """The crop geometry of full-size photos (torchvision's ImageNet values), the one home of these numbers.

    Training takes a random crop of `area` of the image's area at an aspect ratio (width / height) in
    `ratio`, resized to the model's input; evaluation resizes the shorter side to size / `center` and takes
    the centre crop of side size.
    """

    area: tuple = (0.08, 1.0)  # fractions of the image's area
    ratio: tuple = (3 / 4, 4 / 3)  # width / height
    center: float = 0.875  # the centre crop's side over the resized shorter side: torchvision's 224 of 256


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The settings of a recipe; its defaults are the tutorial's. `TrainConfig` takes from it what the user left out."""

    about: str = ""  # one line for `alexnet train --help`
    epochs: int = 50  # full passes over the training split
    batch_size: int = 32  # images per step (per replica)
    image_size: Optional[int] = 227  # side of the square images the convolutions see (pixels); None: --init-from's
    lr: float = 0.001  # fixed learning rate, used when lr_per_256 is None
    lr_per_256: Optional[float] = None  # peak learning rate per 256 images of batch (linear scaling rule)
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0  # decoupled, not on biases or normalization
    warmup_epochs: float = 0.0  # linear warm-up from lr/10 (epochs, fractions allowed); 0: constant lr
    cosine: bool = False  # cosine decay to 0 over the steps after the warm-up
    lr_drops: tuple = ()  # fractions of the run's epochs after which the learning rate is divided by 10
    label_smoothing: float = 0.0
    shift: float = 0.0  # random translation, a fraction of the stored side (1/8: 4 px at 32x32)
    flip: bool = False  # random horizontal flips
    # Streamed image folders: "resize" (the whole image to the storage size; shift and flip in the model), or
    # "random-resized" (full-size photos: the pipeline crops and flips as `geometry` says; evaluation takes
    # the centre crop). In-memory data is always "resize".
    crop: str = "resize"
    geometry: Crop = Crop()
    tta: bool = False  # the final report also averages each test image's and its mirror's predictions
    ten_crop: bool = False  # the final report also gives the paper's 10-crop figures (corners, centre, mirrors)
    pca_lighting: float = 0.0  # std of the paper's PCA lighting noise (0.1 there; 0: none), in training
    ema: float = 0.0  # the final model averages the weights over about this fraction of the last steps (0: none)

    @property
    def crops_in_pipeline(self):
        """A streamed split is cropped (and flipped) by the input pipeline, not resized whole for the model."""
        return self.crop == "random-resized"

    @property
    def one_hot(self):
        """Label smoothing needs one-hot labels (Keras's sparse loss has no smoothing)."""
        return self.label_smoothing > 0

    def default_lr(self, batch_size):
        """The learning rate when --lr is not given."""
        return self.lr if self.lr_per_256 is None else self.lr_per_256 * batch_size / 256

    def defaults(self, batch_size=None):
        """The TrainConfig fields this recipe sets (RECIPE_FIELDS), the learning rate for `batch_size` if given."""
        batch_size = self.batch_size if batch_size is None else batch_size
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.default_lr(batch_size),
                "image_size": self.image_size, "tta": self.tta, "ten_crop": self.ten_crop,
                "pca_lighting": self.pca_lighting, "ema": self.ema}

    def help(self):
        """The recipe's values, for `alexnet train --help`."""
        lr = f"lr {self.lr_per_256:g} x batch/256" if self.lr_per_256 is not None else f"lr {self.lr:g}"
        extras = ", 10-crop test" * self.ten_crop + f", PCA lighting {self.pca_lighting:g}" * bool(self.pca_lighting)
        extras += f", weight average over the last {self.ema:.0%} of the steps" * bool(self.ema)
        size = "the trained model's size" if self.image_size is None else f"{self.image_size} px"
        return (f"{self.about} ({self.epochs} epochs, batch {self.batch_size}, {lr}, {size}, "
                f"TTA {'on' if self.tta else 'off'}{extras})")


# The TrainConfig fields a recipe sets when the user leaves them out (None there: the recipe's value).
RECIPE_FIELDS = ("epochs", "batch_size", "lr", "image_size", "tta", "ten_crop", "pca_lighting", "ema")


_FAST = Recipe(about="augmentation, Nesterov SGD, weight decay, warm-up + cosine, label smoothing; for a GPU",
               epochs=30, batch_size=512, lr_per_256=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
               warmup_epochs=2, cosine=True, label_smoothing=0.1, shift=1 / 8, flip=True, tta=True)

RECIPES = {
    "tutorial": Recipe(about="the tutorial's settings: plain SGD, no augmentation"),
    "fast": _FAST,
    # Tuned at 4 epochs on 2 cores (BENCHMARKS.md, "Tuning the cpu recipe"): batch 256 beat 512, a half-epoch
    # warm-up matched two epochs, peak lr 0.05 per 256 beat 0.1.
    "cpu": dataclasses.replace(_FAST, about="fast for a small CPU (about 10 min on 2 cores); give it the epochs "
                                      "your time allows", epochs=4, batch_size=256, image_size=67, warmup_epochs=0.5),
    # Fine-tuning: no warm-up (the layers are not random), few epochs, the image size the trained model's
    # (TrainConfig.resolved). Peak lr 0.02 per 256, chosen on validation (BENCHMARKS.md, "Transfer"): 0.005 fell
    # 10 points short; 0.05 was 2 images better of 80, but 5x torchvision's own lr, risky for its weights (no BN).
    "finetune": dataclasses.replace(_FAST, about="for --init-from: fine-tune trained weights on your images",
                                    epochs=10, batch_size=64, lr_per_256=0.02, warmup_epochs=0, image_size=None),
    # The paper's training (Krizhevsky et al. 2012, section 5), with torchvision's fixed drops: SGD momentum 0.9,
    # weight decay 5e-4, batch 128 at 0.01 (scaled linearly), lr / 10 at epochs 30, 60, 80 of 90; random-resized
    # crops and flips in the pipeline; the paper's PCA lighting noise (std 0.1) and its 10-crop test.
    "imagenet": Recipe(about="the paper's ImageNet training, for streamed photo folders", epochs=90, batch_size=128,
                       image_size=227, lr_per_256=0.02, momentum=0.9, weight_decay=5e-4,
                       lr_drops=(30 / 90, 60 / 90, 80 / 90), flip=True, crop="random-resized", ten_crop=True,
                       pca_lighting=0.1),
}


def get(name):
    """The recipe called `name` (a key of RECIPES); UsageError for another name."""
    return RECIPES[check_choice("--recipe", name, RECIPES)]


def describe(name, batch_size, lr, pca_lighting=None, ten_crop=None, ema=None):
    """What the recipe does, for config.json and the console (pca_lighting, ten_crop, ema: the run's, if not the
    recipe's)."""
    recipe = get(name)
    pca_lighting = recipe.pca_lighting if pca_lighting is None else pca_lighting
    ten_crop = recipe.ten_crop if ten_crop is None else ten_crop
    ema = recipe.ema if ema is None else ema
    if recipe.lr_drops:
        schedule = (f"{lr:g}, divided by 10 after " + ", ".join(f"{f:.3g}" for f in recipe.lr_drops)
                    + " of the epochs (30, 60 and 80 of 90)")
    elif recipe.warmup_epochs or recipe.cosine:
        schedule = (f"linear warm-up {recipe.warmup_epochs:g} epochs from {lr / 10:g} to {lr:g}"
                    f"{', then cosine decay to 0' if recipe.cosine else ''}")
    else:
        schedule = f"constant {lr:g}"
    optimizer = "SGD" + (f" nesterov momentum {recipe.momentum:g}" if recipe.nesterov else
                         f" momentum {recipe.momentum:g}" if recipe.momentum else "")
    if recipe.weight_decay:
        optimizer += f", weight decay {recipe.weight_decay:g}"
    augmentation = [f"random translation +-{recipe.shift:g} of the side (zero = image mean)"] * bool(recipe.shift)
    augmentation += ["horizontal flip"] * recipe.flip
    if recipe.crops_in_pipeline:
        crop = recipe.geometry
        augmentation.append(f"streamed folders: random-resized crop ({crop.area[0]:g}-{crop.area[1]:g} of "
                            f"the area, aspect {crop.ratio[0]:.3g}-{crop.ratio[1]:.3g}); evaluation: "
                            f"resize, centre crop {crop.center:g}")
    described = {"optimizer": optimizer, "schedule": schedule, "label_smoothing": recipe.label_smoothing,
                 "augmentation": ", ".join(augmentation) or "none",
                 "test_time_augmentation": "image and mirror averaged" if recipe.tta else "none"}
    if pca_lighting:
        described["augmentation"] += (f", PCA lighting noise (std {pca_lighting:g}, on the colour "
                                      "components of standardized training pixels)")
    if ten_crop:
        described["ten_crop_test"] = ("four corners and the centre of the evaluation image, each with its mirror, "
                                      "averaged")
    if ema:
        described["weight_average"] = (f"exponential moving average of the weights over about the last {ema:.0%} of "
                                       "the steps (Keras's use_ema); the final model (model.keras) is the average, "
                                       "validation and best.keras use the trained weights")
    if recipe.lr_per_256 is not None:
        described["lr_rule"] = (f"lr = {recipe.lr_per_256:g} x batch / 256 = {recipe.default_lr(batch_size):g} "
                                f"at batch {batch_size}")
    return described


TOP_K = 5  # the k of top-k accuracy (the paper's top-5)


def top_k(classes):
    """The k of a model's top-k accuracy: 5, or the number of classes where there are fewer."""
    return min(TOP_K, classes)


def logs_top_k(classes):
    """Whether each epoch logs top-5 accuracy: only above 5 classes (top-5 of 5 or fewer is always 1)."""
    return classes > TOP_K
