"""The `alexnet` command's flags and its `main`: train, evaluate, predict, inspect, export, import-weights, summary,
samples.

What each subcommand does is in `alexnet.commands`.

Exit status: 0 on success, 2 for a usage error, 1 for any other failure. Errors
are one line on stderr; `--debug` shows the traceback instead.
"""

import argparse
import contextlib
import logging
import sys
import traceback

from alexnet import __version__, console
from alexnet.commands import COMMANDS
from alexnet.data.splits import VAL_SIZE_RULE
from alexnet.errors import AlexnetError, UsageError
from alexnet.settings.choices import (BACKENDS, DEFAULT_MODEL, FORMATS, FREEZE, MODELS, STRATEGIES,
                                      check_environment)
from alexnet.settings.config import TrainConfig
from alexnet.settings.recipes import RECIPE_FIELDS, RECIPES

log = logging.getLogger(__name__)


def _number(kind, least, what):
    """An argparse type: `kind` (int or float) at least `least`, finite, named `what` in errors."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what}, received {text!r}") from None
        if not least <= value < float("inf"):  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be a {what}, received {text}")
        return value

    return parse


_positive_int = _number(int, 1, "positive integer")
_non_negative_int = _number(int, 0, "non-negative integer")
_positive_float = _number(float, float.fromhex("0x1p-1074"), "positive number")  # the smallest float above 0
_non_negative_float = _number(float, 0.0, "non-negative number")


def _size(text):
    """Parses 'N' or 'HxW' into (height, width)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or HxW, received {text!r}")
    sides = tuple(_positive_int(p) for p in parts)
    return sides * 2 if len(sides) == 1 else sides


def _add_backend(parser):
    parser.add_argument("--backend", choices=BACKENDS, default=argparse.SUPPRESS,
                        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")


def _global_flags(default):
    """--debug and --quiet, accepted before the command (default False) and after it (default: not given)."""
    flags = argparse.ArgumentParser(add_help=False, argument_default=default)
    flags.add_argument("--debug", action="store_true", help="show tracebacks and TensorFlow's logs")
    flags.add_argument("--quiet", action="store_true", help="show warnings and errors only")
    return flags


def _recipe_default(name):
    """The help text's default of a setting that the recipe sets: each recipe's value."""
    values = ", ".join(f"{recipe} {getattr(RECIPES[recipe], name)}" for recipe in RECIPES)
    return f"(default: the recipe's: {values})"


def build_parser():
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="alexnet", parents=[_global_flags(False)],
                                     description="AlexNet on CIFAR-10 with Keras 3: train, evaluate, inspect.")
    parser.add_argument("--version", action="version", version=f"alexnet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    after = [_global_flags(argparse.SUPPRESS)]  # a subcommand's value must not hide the one given before it

    train = commands.add_parser("train", help="train a model and write a run folder", parents=after,
                                description="Train AlexNet. The recipe (--recipe, the tutorial's unless given) "
                                            f"sets the defaults of {', '.join(RECIPE_FIELDS)}; every flag "
                                            "given wins over it.",
                                argument_default=argparse.SUPPRESS)  # so --resume can tell which flags were given
    train.add_argument("--data", help="'cifar10' (keras.datasets download), an image folder (train/<class>/*, "
                                      "test/<class>/* or val/<class>/*), ImageNet (train/<wnid>/ with val/<wnid>/, "
                                      "or Kaggle's folder with ILSVRC/ and LOC_val_solution.csv), a "
                                      "cifar-10-batches-py folder, or a .tar.gz/.zip of one "
                                      f"(default: {defaults.data})")
    train.add_argument("--model", choices=MODELS,
                       help=f"(default: --init-from's, else {DEFAULT_MODEL}); alexnet-torchvision is torchvision's "
                            "AlexNet, whose ImageNet weights alexnet import-weights converts")
    train.add_argument("--epochs", type=_positive_int, help=_recipe_default("epochs"))
    train.add_argument("--batch-size", type=_positive_int, help=_recipe_default("batch_size"))
    train.add_argument("--lr", type=_positive_float,
                       help="peak SGD learning rate (default: the recipe's: " + ", ".join(
                           f"{name} {r.lr:g}" if r.lr_per_256 is None else f"{name} {r.lr_per_256:g} x batch / 256"
                           for name, r in RECIPES.items()) + ")")
    train.add_argument("--image-size", type=_positive_int,
                       help="side of the images the network sees, in pixels; 67 is the smallest (63 for "
                            "alexnet-torchvision) (default: --init-from's, else the recipe's: " + ", ".join(
                                f"{name} {r.image_size}" for name, r in RECIPES.items() if r.image_size) + ")")
    train.add_argument("--val-size", type=_non_negative_int,
                       help="validation images held out of the training images; 0: none, for a final fit on all "
                            "of them once the settings are fixed (no validation figures, no best.keras) (default: "
                            f"{VAL_SIZE_RULE.replace('%', '%%')})")  # argparse formats help with %
    train.add_argument("--seed", type=_non_negative_int, help=f"seeds splits, shuffling, initialization, dropout "
                                                f"(default: {defaults.seed})")
    train.add_argument("--limit-train", type=_positive_int, metavar="N",
                       help="use at most N training images (after validation is taken out)")
    train.add_argument("--limit-test", type=_positive_int, metavar="N",
                       help="use a seeded random sample of N test images")
    train.add_argument("--storage-size", type=_size, metavar="N|HxW",
                       help="size images are stored at before the model resizes them "
                            "(default: the source's own, for folders the most common size)")
    train.add_argument("--strict", action="store_true", help="unreadable image files are an error, not skipped")
    train.add_argument("--stream", action=argparse.BooleanOptionalAction,
                       help="image folders: read the files from disk as training goes (tf.data on TensorFlow, "
                            "Grain on JAX and PyTorch), one shard per process, instead of decoding them into "
                            "memory (default: stream a folder whose decoded images would not fit in memory, and "
                            "every folder under a recipe that crops files in the pipeline: imagenet)")
    train.add_argument("--run-dir", help="the run's folder (default: runs/<timestamp>-<model>)")
    train.add_argument("--overwrite", action="store_true", help="let --run-dir replace a folder that holds a run")
    train.add_argument("--recipe", choices=list(RECIPES),
                       help=f"(default: {defaults.recipe}) " + "; ".join(f"{name}: {recipe.help()}"
                                                                           for name, recipe in RECIPES.items()))
    train.add_argument("--tta", action=argparse.BooleanOptionalAction,
                       help="the final report also gives test-time-augmented figures: each test image's "
                            "and its mirror's predictions averaged " + _recipe_default("tta"))
    train.add_argument("--ten-crop", action=argparse.BooleanOptionalAction,
                       help="the final report also gives the paper's 10-crop test: four corners and the centre, "
                            "each with its mirror, averaged " + _recipe_default("ten_crop"))
    train.add_argument("--pca-lighting", type=_non_negative_float, metavar="STD",
                       help="the paper's PCA lighting noise in training: std of the random weight of each colour "
                            "component, 0 for none " + _recipe_default("pca_lighting"))
    train.add_argument("--ema", type=_non_negative_float, metavar="FRACTION",
                       help="the final model is an exponential moving average of the weights over about this "
                            "fraction of the run's last steps (Keras's use_ema), 0 for the last weights "
                            + _recipe_default("ema"))
    train.add_argument("--jit", action=argparse.BooleanOptionalAction,
                       help="XLA compilation (default: on for GPUs and JAX, off otherwise)")
    train.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction,
                       help="compute in bfloat16 (or float16 on GPUs before Ampere) with float32 weights "
                            "(default: on for GPUs, and on CPUs where bfloat16 measured faster: AMD with AVX512-BF16, "
                            "Intel with AMX; TensorFlow and PyTorch only)")
    train.add_argument("--strategy", choices=list(STRATEGIES),
                       help="auto (the default): all local GPUs when there are several, else one device; "
                            "mirrored: tf.distribute over local GPUs; data-parallel: JAX, also over several "
                            "hosts; multiworker is refused (Keras 3 cannot, keras-team/keras#20585). "
                            "--batch-size is per replica")
    train.add_argument("--checkpoint-every", type=_non_negative_float, metavar="MINUTES",
                       help="minutes of training between mid-epoch checkpoints, for epochs longer than that (a stop "
                            "signal or Ctrl-C also saves the step it lands on); 0: only then "
                            f"(default: {defaults.checkpoint_every:g})")
    train.add_argument("--checkpoint-gap", type=_non_negative_float, metavar="SECONDS",
                       help="fewest seconds of training between two epoch checkpoints: an epoch that ends sooner is "
                            "logged but not saved (the last epoch, and one where a stop lands, always are), so that "
                            "short epochs do not spend as long saving as training; a crash loses at most this much; "
                            f"0: every epoch (default: {defaults.checkpoint_gap:g})")
    train.add_argument("--test-each-epoch", action="store_true",
                       help="also log test accuracy every epoch, for benchmarks (never choose anything by it)")
    train.add_argument("--init-from", metavar="MODEL_OR_RUN",
                       help="start from trained weights: a .keras file (such as alexnet import-weights writes) or a "
                            "run folder; every layer whose shape fits keeps its weights, a new head is made for "
                            "another number of classes. The model and image size are the weights' unless given. "
                            "Use it with --recipe finetune")
    train.add_argument("--freeze", choices=FREEZE,
                       help="with --init-from: features keeps the convolutional layers as they came (batch "
                            "normalization in inference mode) and trains the dense layers; none trains all "
                            f"(default: {defaults.freeze})")
    _add_backend(train)
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue a stopped run from its last completed epoch, with its own settings "
                            "(only --epochs may be given, to train a run further)")

    evaluate = commands.add_parser("evaluate", help="test a trained model", parents=after,
                                   description="Evaluate a run folder's model on its own test split, "
                                               "or a model on the test part of --data.")
    evaluate.add_argument("target", metavar="RUN_DIR_OR_MODEL")
    evaluate.add_argument("--data", default=None, help="data to test on (default: the run's own)")
    evaluate.add_argument("--limit-test", type=_positive_int, default=None, metavar="N")
    evaluate.add_argument("--batch-size", type=_positive_int, default=32, help="images per batch (default: 32)")
    evaluate.add_argument("--tta", action="store_true",
                          help="also report test-time-augmented figures (each image and its mirror averaged)")
    evaluate.add_argument("--ten-crop", action="store_true",
                          help="also report the paper's 10-crop figures (four corners and the centre, each with "
                               "its mirror, averaged)")
    _add_backend(evaluate)
    evaluate.add_argument("--out", default=None, metavar="DIR",
                          help="folder for report.json, report.md, confusion.png, mistakes.png "
                               "(default, in a run folder: evaluation/ for the run's own test split, "
                               "evaluation-<data>[-<N>]/ for other data or another --limit-test)")

    predict = commands.add_parser("predict", help="top classes of a model for image files", parents=after)
    predict.add_argument("target", metavar="RUN_DIR_OR_MODEL")
    predict.add_argument("images", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files, or folders of them")
    predict.add_argument("--top-k", type=_positive_int, default=3)
    predict.add_argument("--json", action="store_true", help="print one JSON document")
    predict.add_argument("--out", metavar="FILE.csv|FILE.json",
                         help="write the table (one row per file: its top-k classes and probabilities, or its error) "
                              "as CSV or JSON, by the suffix; only a summary line is printed")
    predict.add_argument("--tta", action="store_true", help="average each image's and its mirror's probabilities")
    predict.add_argument("--explain", metavar="DIR",
                         help="write one Grad-CAM overlay per image into DIR: where the evidence for the top class "
                              "lies")
    _add_backend(predict)

    inspect = commands.add_parser("inspect", parents=after,
                                  help="draw what a model learned: conv1's kernels, nearest neighbours, Grad-CAM",
                                  description="Write filters.png (the paper's Figure 3: conv1's kernels), "
                                              "neighbours.png (its Figure 4: top-5 bars, and the training images "
                                              "nearest to test images by fc2's 4096-d output) and gradcam.png "
                                              "(where the evidence lies, on right and wrong test images); in a run "
                                              "folder also to its TensorBoard log.")
    inspect.add_argument("target", metavar="RUN_DIR_OR_MODEL")
    inspect.add_argument("--data", default=None, help="data whose images the pictures show (default: the run's own)")
    inspect.add_argument("--out", default=None, metavar="DIR",
                         help="(default: inspect/ in the run folder, inspect-<name>/ beside a .keras file)")
    inspect.add_argument("--neighbours-from", type=_positive_int, default=None, metavar="N",
                         help="search a seeded sample of N training images for neighbours (default: all of them "
                              "in memory, 10,000 when they stream from disk)")
    inspect.add_argument("--seed", type=_non_negative_int, default=0, help="chooses the images shown (default: 0)")
    _add_backend(inspect)

    export = commands.add_parser("export", help="write a model as SavedModel, ONNX or TFLite, checked by its runtime",
                                 parents=after,
                                 description="Export a run folder's model (or a .keras file) for deployment; the "
                                             "artifact takes uint8 images at the stored size. It is then loaded by "
                                             "its runtime (tf.saved_model, onnxruntime, LiteRT) and compared with "
                                             "the Keras model on test images; a mismatch exits 1 and keeps nothing. "
                                             'Needs: pip install -e ".[export]"')
    export.add_argument("target", metavar="RUN_DIR_OR_MODEL")
    export.add_argument("--format", default="savedmodel", choices=list(FORMATS),
                        help="(default: %(default)s)")
    export.add_argument("--out", default=None, metavar="PATH",
                        help="file (folder for savedmodel) to write (default: export/ in the run folder, "
                             "or beside the .keras file)")
    export.add_argument("--data", default=None,
                        help="data whose test images the check uses (default: the run's own)")
    export.add_argument("--check-images", type=_positive_int, default=256, metavar="N",
                        help="images the check runs through both models (default: %(default)s)")
    _add_backend(export)

    weights = commands.add_parser("import-weights", parents=after,
                                  help="convert torchvision's AlexNet weights (.pth) into a .keras model",
                                  description="Convert a torchvision AlexNet state dict (such as "
                                              "alexnet-owt-7be5be79.pth, ImageNet, 56.52%% top-1) into a "
                                              "alexnet-torchvision .keras model that predicts, evaluates, exports "
                                              "and fine-tunes (--init-from) like any of ours. Read with "
                                              "torch.load(weights_only=True): a file holding code is refused. "
                                              'Needs torch: pip install -e ".[torch]"')
    weights.add_argument("weights", metavar="FILE.pth")
    weights.add_argument("--out", required=True, metavar="MODEL.keras", help="the .keras file to write")
    weights.add_argument("--class-names", metavar="FILE",
                         help="a text file with one class name per line, in output order (default: ImageNet's for "
                              "1000 classes, else 0, 1, ...)")
    weights.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_backend(weights)

    summary = commands.add_parser("summary", help="print a model's layers and parameter count", parents=after)
    summary.add_argument("--model", default=DEFAULT_MODEL, choices=MODELS)
    summary.add_argument("--image-size", type=_positive_int, default=None,
                         help="(default: the model's own: 227, 224 for alexnet-torchvision)")
    summary.add_argument("--num-classes", type=_positive_int, default=10)
    summary.add_argument("--input-size", type=_size, default=(32, 32), metavar="N|HxW",
                         help="size of the stored images the model takes (default: 32)")
    _add_backend(summary)

    samples = commands.add_parser("samples", help="draw a grid of training images titled with their classes",
                                  parents=after)
    samples.add_argument("--data", default=defaults.data)
    samples.add_argument("--out", default="samples.png", help="PNG file to write (default: %(default)s)")
    samples.add_argument("--count", type=_positive_int, default=20)
    samples.add_argument("--seed", type=_non_negative_int, default=0)
    return parser


def main(argv=None):
    """Runs the CLI and returns its exit status (the same with --debug, which adds the traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on a usage error
    console.setup(quiet=args.quiet)
    try:
        check_environment()
        from alexnet import backend

        backend.startup_logs = args.debug
        if args.command != "train":  # train and resume choose the backend themselves (a run's own, on resume)
            try:
                backend.select_backend(getattr(args, "backend", None))
            except ValueError as error:
                raise UsageError(str(error)) from None
            backend.load_keras()
        # Without --debug, TensorFlow's C++ log lines are dropped from stderr: what is shown is ours (or Python's).
        with contextlib.nullcontext() if args.debug else console.native_logs_filtered():
            code = COMMANDS[args.command](args)
    except AlexnetError as error:
        if args.debug:
            traceback.print_exc()
        print(f"alexnet: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as error:  # a second Ctrl-C or stop signal (errors.StopNow), or one before a run
        code = getattr(error, "exit_code", 130)
        print("alexnet: interrupted" if code == 130 else "alexnet: stopped by a second signal", file=sys.stderr)
        return code
    except Exception as error:  # anything unexpected: one line, the traceback with --debug
        if args.debug:
            traceback.print_exc()
        print(f"alexnet: error: {type(error).__name__}: {error}"
              + ("" if args.debug else " (run with --debug for the traceback)"), file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0
